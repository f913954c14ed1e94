"""Write README.md from `nbs/index.ipynb` without Quarto.

nbdev's own `nbdev-readme` renders through Quarto, which cannot be installed offline. This script uses nbdev's
notebook processor (so `#| hide`, `#| echo: false`, `#| output: false` and `hide_line` mean what they mean in the
docs) and writes plain GitHub Markdown: prose as is, code in fenced blocks, text outputs in plain blocks and image
outputs saved next to the README under `images/readme/`.

Usage: `python tools/make_readme.py [--out README.md] [--nb nbs/index.ipynb]`
"""
import argparse, base64, hashlib, os, re
from pathlib import Path
from nbdev.process import NBProcessor
from nbdev.processors import hide_, hide_line, strip_ansi, clean_magics, filter_stream_

ROOT = Path(__file__).resolve().parents[1]
BANNER = "<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n"

def _fence(text, lang=''): return f"```{lang}\n{text.rstrip()}\n```"

def _image(data, img_dir, rel_dir):
    "Save a base64 PNG output under `img_dir`, named by its content, and return a Markdown link to it."
    raw = base64.b64decode(data)
    name = f"out-{hashlib.sha1(raw).hexdigest()[:12]}.png"
    img_dir.mkdir(parents=True, exist_ok=True)
    (img_dir/name).write_bytes(raw)
    return f"![]({rel_dir}/{name})"

def _output_md(out, img_dir, rel_dir):
    "Markdown for one cell output: images saved as files, markdown as is, text in a plain block."
    if out.get('output_type') == 'stream': return _fence(''.join(out['text']))
    data = out.get('data', {})
    if 'image/png' in data: return _image(data['image/png'], img_dir, rel_dir)
    if 'text/markdown' in data: return ''.join(data['text/markdown'])
    if 'text/plain' in data: return _fence(''.join(data['text/plain']))
    return ''

_LOCAL_IMG = re.compile(r'(!\[[^\]]*\]\()(?![a-z]+://|/)([^)\s]+)')

def rebase_images(md:str, prefix:str) -> str:
    "Markdown `md` with its relative image links prefixed by `prefix` (the notebook's folder seen from the README)."
    return _LOCAL_IMG.sub(lambda m: m[1] + (f'{prefix}/{m[2]}' if prefix != '.' else m[2]), md)

def _cell_md(cell, img_dir, rel_dir, nb_prefix='.'):
    "Markdown for one processed cell, honouring `echo: false` and `output: false`."
    if cell.cell_type == 'markdown': return [rebase_images(cell.source, nb_prefix)]
    d = cell.directives_
    parts = [] if str(d.get('echo')).lower() == 'false' or not cell.source.strip() else [_fence(cell.source, 'python')]
    shown = str(d.get('output')).lower() != 'false' and str(d.get('eval')).lower() != 'false'  # unrun cells show no output
    if shown: parts += [_output_md(o, img_dir, rel_dir) for o in cell.get('outputs', [])]
    return [p for p in parts if p]

def readme_text(nb_path, out_path):
    "The README for `nb_path`, with image outputs written beside `out_path`."
    img_dir = Path(out_path).parent/'images'/'readme'
    for old in img_dir.glob('out-*.png'): old.unlink()  # generated: stale images must not linger
    proc = NBProcessor(nb_path, procs=[hide_, hide_line, filter_stream_, strip_ansi, clean_magics])
    proc.process()
    prefix = Path(os.path.relpath(Path(nb_path).resolve().parent, Path(out_path).resolve().parent)).as_posix()
    blocks = [b for c in proc.nb.cells for b in _cell_md(c, img_dir, 'images/readme', prefix)]
    return BANNER + '\n\n'.join(blocks) + '\n'

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--nb', default=str(ROOT/'nbs'/'index.ipynb'), help='notebook to render')
    p.add_argument('--out', default=str(ROOT/'README.md'), help='where to write the README')
    a = p.parse_args()
    Path(a.out).write_text(readme_text(a.nb, a.out))

if __name__ == '__main__': main()
