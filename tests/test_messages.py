"""Every user-facing message speaks the command line: each `--option` a `raise` or `warnings.warn` message of the
package names is an option of some subcommand, and each `key=` is a config key, or one of the few names below that only
Python callers meet (parameters of library functions, placeholders)."""
import ast, re
from dataclasses import fields
from pathlib import Path
from fastcore.script import anno_parser
from ssl_mae.config import MAEConfig
from ssl_mae.cli import COMMANDS

PACKAGE = Path(__file__).resolve().parents[1]/'ssl_mae'
# `key=` words allowed besides config keys: Python-only parameters and placeholders, each with where it is used
PYTHON_ONLY = {'key': 'the key=value placeholder', 'cfg': 'load_pretrained(src, cfg=...)',
               'photos': 'scan_mad(folder, photos=True), said as Python', 'train_pct': 'split_by_subject',
               'mode': 'pseudo_pool', 'start_epoch': 'fit_one_cycle(n, start_epoch=...)', 'm': 'MarginLoss(m)',
               'model_type': "a Hugging Face config.json field"}
# `--option` words of other tools a message tells the user to run
OTHER_TOOLS = {'--local-dir': 'hf download (huggingface_hub)', '--revision': 'hf download (huggingface_hub)'}

def messages():
    "(module, message text) of every raise and warnings.warn call in the package (literal parts of f-strings)."
    for py in sorted(PACKAGE.glob('*.py')):
        for n in ast.walk(ast.parse(py.read_text())):
            call = n.exc if isinstance(n, ast.Raise) else n if isinstance(n, ast.Call) and getattr(n.func, 'attr', '') == 'warn' else None
            if call is not None:
                yield py.name, ''.join(c.value for c in ast.walk(call) if isinstance(c, ast.Constant) and isinstance(c.value, str))

def test_every_option_named_in_a_message_exists():
    options = {'--help', '--version'} | {o for f in COMMANDS.values() for a in anno_parser(f)._actions for o in a.option_strings} | set(OTHER_TOOLS)
    named = [(mod, o) for mod, msg in messages() for o in re.findall(r'(?<![\w-])--[a-z][a-z-]*', msg)]
    assert len(named) > 10  # the walk finds the messages
    assert [(mod, o) for mod, o in named if o not in options] == []

def test_every_key_named_in_a_message_is_a_config_key():
    keys = {f.name for f in fields(MAEConfig)} | set(PYTHON_ONLY)
    named = [(mod, k) for mod, msg in messages() for k in re.findall(r'(?<![\w.\[\'"])([a-z_][a-z0-9_]*)=(?!=)', msg)]
    assert any(k == 'learning_rate' for _, k in named)
    assert [(mod, k) for mod, k in named if k not in keys] == []
