"""How long does the `ssl_mae` command take to answer `--help`, next to a bare Python start and to the imports a
training subcommand needs?

Each command runs `--repeat` times (default 5) in fresh processes; the script prints the median wall time of each
and its ratio to a bare `python -c pass`. Target (issue: a fast, quiet command line): `ssl_mae --help` under 2 s on
2 cores. Takes about a minute on 2 cores (the heavy import is timed too).

    python benchmarks/cli_startup.py [--repeat 5]
"""
import argparse, statistics, subprocess, sys, time
from pathlib import Path

PY = sys.executable
EXE = str(Path(PY).parent/'ssl_mae')
COMMANDS = {  # name -> command line
    'python -c pass': [PY, '-c', 'pass'],
    'ssl_mae --help': [EXE, '--help'],
    'ssl_mae predict --help': [EXE, 'predict', '--help'],
    'import ssl_mae.learner (what training loads)': [PY, '-c', 'import ssl_mae.learner'],
}

def wall(cmd) -> float:
    "Seconds one run of `cmd` takes, start to exit."
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeat', type=int, default=5)
    a = p.parse_args()
    times = {k: statistics.median(wall(c) for _ in range(a.repeat)) for k, c in COMMANDS.items()}
    base = times['python -c pass']
    print(f"median of {a.repeat} runs each, fresh processes:")
    for k, t in times.items(): print(f"  {k:46s} {t:6.2f} s  {t / base:6.1f}x python -c pass")
    print(f"ssl_mae --help / import ssl_mae.learner: {times['ssl_mae --help'] / times[list(COMMANDS)[-1]]:.2f}")
    print(f"target ssl_mae --help < 2 s: {'met' if times['ssl_mae --help'] < 2 else 'NOT met'}")

if __name__ == '__main__': main()
