"""Fail when the committed files are not what the notebooks produce.

Checks, in order, on a scratch copy of the working tree (the tree itself is never touched):
1. `ssl_mae/` equals what `nbdev-export` writes from `nbs/`;
2. every notebook is clean (`nbdev-clean` changes nothing);
3. README.md (and its images) equal what `tools/make_readme.py` writes from `nbs/index.ipynb`.
Exits 1 with one message naming the files and the fix at the first failing check.
"""
import filecmp, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def project_files(root=ROOT):
    "Files git tracks plus untracked ones it does not ignore."
    out = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=root,
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.split('\0') if f and (root/f).is_file()]

def copy_tree(dest):
    "Copy the project's files into `dest`."
    for f in project_files():
        (dest/f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT/f, dest/f)

def changed(a, b, pattern):
    "Relative paths matching `pattern` that differ between folders `a` and `b` (either side)."
    names = {p.relative_to(a) for p in a.glob(pattern) if p.is_file()} | {p.relative_to(b) for p in b.glob(pattern) if p.is_file()}
    names = {n for n in names if '__pycache__' not in n.parts and '.ipynb_checkpoints' not in n.parts}
    return sorted(str(n) for n in names if not ((a/n).exists() and (b/n).exists() and filecmp.cmp(a/n, b/n, shallow=False)))

def run(cmd, cwd):
    "Run `cmd` in `cwd`; exit with its output when it fails."
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode: sys.exit(f"`{' '.join(map(str, cmd))}` failed:\n{r.stdout}{r.stderr}")

CHECKS = [  # (command, file patterns it may change, message when it changes them)
    ([BIN/'nbdev-export'], ['ssl_mae/**/*'],
     "The package differs from what the notebooks export: {files}.\n"
     "Edit the notebook in nbs/, not ssl_mae/*.py; then run `nbdev-export` and commit notebook and module together."),
    ([BIN/'nbdev-clean'], ['nbs/**/*.ipynb'],
     "These notebooks are not clean: {files}.\nRun `nbdev-clean` and commit the result."),
    ([sys.executable, 'tools/make_readme.py'], ['README.md', 'images/readme/*'],
     "README.md is stale: it differs from what tools/make_readme.py writes from nbs/index.ipynb.\n"
     "Run `python tools/make_readme.py` and commit README.md (and images/readme/)."),
]

def main():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        copy_tree(tmp)
        for cmd, patterns, msg in CHECKS:
            run(cmd, tmp)
            files = [f for p in patterns for f in changed(ROOT, tmp, p)]
            if files: sys.exit(msg.format(files=', '.join(files)))
    print("sources in sync: package == notebooks, notebooks clean, README up to date")

if __name__ == '__main__': main()
