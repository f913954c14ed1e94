"""The package's layering: every import of a module of `ssl_mae` points down the order stated in the package's
docstring (so there is no cycle), and the modules that handle files, landmarks and single photos load neither torch
nor fastai (an `align_dataset` worker starts without them)."""
import ast, re, subprocess, sys
from pathlib import Path
import ssl_mae

PKG = Path(ssl_mae.__file__).parent
# deliberate upward imports, each inside a function: (module, imported module, why)
UPWARD = {('faces', 'align'): "the moved-names shim: old `ssl_mae.faces.align_dataset` imports still work"}

def order() -> list[str]:
    "The modules in the order of the docstring's numbered layers."
    layers = re.findall(r'^\d+\. (.*)$', ssl_mae.__doc__, re.M)
    return [m for line in layers for m in re.findall(r'`(\w+)`', line)]

def imports(name:str) -> list[tuple[str, bool]]:
    "(package module imported, at module level?) for every import in module `name`."
    tree, found = ast.parse((PKG/f'{name}.py').read_text()), []
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or '').startswith('ssl_mae')):
            mod = node.module.removeprefix('ssl_mae').lstrip('.') if node.module else ''
            targets = [mod.split('.')[0]] if mod else [a.name for a in node.names]  # `from . import x`
            found += [(t, id(node) in top) for t in targets if t != '__version__' and t]
        elif isinstance(node, ast.Import):
            found += [(a.name.split('.')[1], id(node) in top) for a in node.names if a.name.startswith('ssl_mae.')]
    return found

def modules() -> list[str]: return sorted(p.stem for p in PKG.glob('*.py') if not p.stem.startswith('_'))

def test_the_docstring_orders_every_module_once():
    assert sorted(order()) == modules() and len(set(order())) == len(order())

def test_every_import_points_down_the_order():
    rank = {m: i for i, m in enumerate(order())}
    up = [(m, t) for m in modules() for t, _ in imports(m) if rank[t] >= rank[m] and (m, t) not in UPWARD]
    assert not up, f"imports against the layering (module, imported): {up}"

def test_no_module_level_cycle():
    graph = {m: {t for t, top in imports(m) if top} for m in modules()}
    done, visiting = set(), []
    def visit(m):
        assert m not in visiting, f"import cycle: {' -> '.join(visiting[visiting.index(m):] + [m])}"
        if m in done: return
        visiting.append(m)
        for t in graph[m]: visit(t)
        visiting.pop(); done.add(m)
    for m in graph: visit(m)

def test_the_upward_imports_are_inside_functions():
    for (m, t), why in UPWARD.items():
        assert (t, False) in imports(m) and (t, True) not in imports(m), why

def test_files_landmarks_and_photos_load_no_torch():
    code = ("import sys, ssl_mae.config, ssl_mae.io, ssl_mae.landmarks, ssl_mae.synth, ssl_mae.faces, ssl_mae.align\n"
            "print(sorted(m for m in ('torch', 'fastai', 'timm') if m in sys.modules))")
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == '[]', res.stdout + res.stderr

def test_the_layering_check_catches_an_upward_import(tmp_path, monkeypatch):
    "The check is not vacuous: a module importing one below it in a copy of the package is reported."
    for p in PKG.glob('*.py'): (tmp_path/p.name).write_text(p.read_text())
    (tmp_path/'config.py').write_text((tmp_path/'config.py').read_text() + '\nfrom .data import CLASSES\n')
    monkeypatch.setattr(sys.modules[__name__], 'PKG', tmp_path)
    try: test_every_import_points_down_the_order()
    except AssertionError as e: assert "('config', 'data')" in str(e)
    else: raise AssertionError('an upward import went unnoticed')
