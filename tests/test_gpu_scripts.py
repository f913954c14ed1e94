"""The prepared GPU scripts, run here with tiny settings so that they cannot fail on a lent GPU for a trivial reason:
`benchmarks/gpu_throughput.py` prints its table with every task and mode, and `benchmarks/gpu_session.sh` (DRY_RUN=1)
runs each of its steps and leaves its outputs under $OUT."""
import os, re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'PYTHONWARNINGS': 'ignore', 'OMP_NUM_THREADS': '2'}

def test_gpu_throughput_prints_every_task_and_mode(tmp_path):
    cmd = [sys.executable, ROOT/'benchmarks'/'gpu_throughput.py', '--preset', 'tiny', '--img-size', '32',
           '--batch-size', '8', '--steps', '2', '--warmup', '1', '--n-subjects', '12', '--out', tmp_path, 'patch_size=8',
           '--modes', 'fp32', 'bf16']
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rows = [l.split() for l in r.stdout.splitlines() if re.match(r'\s*(pretrain|finetune|pseudo)\s+(fp32|bf16)\s', l)]
    assert sorted((t, m) for t, m, *_ in rows) == sorted((t, m) for t in ('pretrain', 'finetune', 'pseudo')
                                                          for m in ('fp32', 'bf16'))
    header = next(l.split() for l in r.stdout.splitlines() if l.split()[:2] == ['task', 'mode'])
    for row in rows:  # every rate, ratio and utilisation is a positive number
        cells = dict(zip(header, row))
        for k in ('loop_img_s', 'step_img_s', 'loop_over_step', 'vs_fp32', 'mfu_pct', 'gflop_per_img'):
            assert float(cells[k]) > 0, (k, row)

def test_gpu_session_dry_run_writes_its_outputs(tmp_path):
    out = tmp_path/'out'
    r = subprocess.run(['bash', ROOT/'benchmarks'/'gpu_session.sh'], cwd=tmp_path, capture_output=True, text=True,
                       timeout=900, env={**ENV, 'OUT': str(out), 'DRY_RUN': '1', 'PYTHON': sys.executable})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert {'session.log', 'nvidia-smi.txt', 'gpu_throughput.txt', 'unseen_styles.txt'} <= {p.name for p in out.iterdir()}
    assert 'total wall time' in (out/'gpu_throughput.txt').read_text()
    assert 'Tested on P1 of every style' in (out/'unseen_styles.txt').read_text()
    assert 'done' in (out/'session.log').read_text()
