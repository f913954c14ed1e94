"""How long `align_dataset(..., n_workers=2)` waits for its worker processes to start, side by side with another
checkout of ssl_mae (e.g. the commit before the re-cut that took torch out of the alignment modules).

Each worker is a fresh Python process (the `spawn` start method `align_dataset` uses) that imports the module holding
`_align_file` and loads dlib's models; the script starts 2 such workers, `--repeat` times, alternating between this
tree and the one given with `--against`, and prints the median wall time until both are ready, whether torch was
loaded, and the ratio. Needs the faces extra. Takes about a minute on 2 cores (`--repeat 3`).

Run: `python benchmarks/align_worker_start.py [--against /path/to/old/checkout] [--repeat 3]`
(an older checkout: `git worktree add /tmp/old 9c72142`).
"""
import argparse, importlib, json, multiprocessing, os, statistics, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

def _start(mod:str) -> bool:
    "In a worker: import `mod` and load dlib's models; whether torch got loaded, and the module's file."
    importlib.import_module(mod)
    importlib.import_module('ssl_mae.faces').dlib_models()
    return 'torch' in sys.modules, importlib.import_module(mod).__file__

def _once(mod:str) -> dict:
    "Start 2 spawned workers that run `_start`: seconds until both are ready, and whether torch was loaded."
    t = time.perf_counter()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context('spawn')) as ex:
        res = list(ex.map(_start, [mod, mod]))
    return dict(seconds=time.perf_counter() - t, torch=any(r[0] for r in res), worker_file=res[0][1])

def measure(tree:Path) -> dict:
    "One `_once` in a fresh interpreter that imports ssl_mae from `tree`."
    mod = 'ssl_mae.align' if (tree/'ssl_mae'/'align.py').is_file() else 'ssl_mae.faces'  # where _align_file lives
    env = {**os.environ, 'PYTHONPATH': str(tree)}  # spawned workers inherit it
    code = (f"import json, sys; sys.path[:0] = [{str(tree)!r}, {str(HERE/'benchmarks')!r}]; "
            f"import align_worker_start as a, ssl_mae; print(json.dumps({{**a._once({mod!r}), 'from': ssl_mae.__file__}}))")
    out = subprocess.run([sys.executable, '-c', code], env=env, cwd=tree, capture_output=True, text=True,
                         check=True).stdout
    return {**json.loads(out.splitlines()[-1]), 'module': mod}

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--against', type=Path, help='another checkout of ssl_mae to compare with')
    p.add_argument('--repeat', type=int, default=3)
    a = p.parse_args()
    trees = {'this tree': HERE, **({'--against': a.against.resolve()} if a.against else {})}
    runs = {k: [] for k in trees}
    for _ in range(a.repeat):
        for k, t in trees.items(): runs[k].append(measure(t))
    med = {k: statistics.median(r['seconds'] for r in v) for k, v in runs.items()}
    for k, v in runs.items():
        each = ', '.join(format(r['seconds'], '.2f') for r in v)
        print(f"{k:10s} {v[0]['module']:14s} 2 workers ready: median {med[k]:.2f} s ({each}); "
              f"torch loaded: {v[0]['torch']}; workers ran {v[0]['worker_file']}")
    if a.against: print(f"ratio --against / this tree: {med['--against']/med['this tree']:.1f}x")
