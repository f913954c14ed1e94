"""`examples/distributed_finetune.py` in two CPU processes (torchrun, gloo backend) on a tiny synthetic set, in fp32
and in bf16 mixed precision with a compiled model: both processes train on half of the batches each, rank 0 alone
writes the log and `export.pkl` into the run folder, and the exported detector scores images."""
import math, os, re, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch.distributed as dist
from ssl_mae.config import MAEConfig
from ssl_mae.data import scan_mad, train_table
from ssl_mae.learner import load_exported, predict
from ssl_mae.synth import make_dataset

SCRIPT = Path(__file__).resolve().parents[1]/'examples'/'distributed_finetune.py'
TINY = ['img_size=32', 'patch_size=4', 'batch_size=8']
EPOCHS = 2

def snapshot(folder:Path) -> dict:
    "{relative path: (size, mtime)} of every file under `folder`."
    return {p.relative_to(folder): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob('*') if p.is_file()}

SPEED = {'fp32': [], 'bf16+compile': ['precision=bf16', 'compile=True']}  # the GPU switches, under DDP on CPUs

@pytest.fixture(scope='module', params=list(SPEED))
def ddp(tmp_path_factory, request):
    "Train with two gloo processes; return (work folder, data folder, data snapshot before, completed process)."
    work = tmp_path_factory.mktemp('ddp')
    data = make_dataset(work/'data', n_subjects=30, img_size=32, styles=['LMA'], progress=False)
    before, cwd = snapshot(data), work/'cwd'
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(SCRIPT),
           str(data), str(work/'run'), '--epochs', str(EPOCHS), *TINY, *SPEED[request.param]]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                         env={**env, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return work, data, before, res

pytestmark = pytest.mark.skipif(not dist.is_gloo_available(), reason='torch built without the gloo backend')

def test_both_processes_train_half_the_batches(ddp):
    work, data, _, res = ddp
    cfg = MAEConfig.tiny(seed=0).override(TINY)
    n = int((~train_table(scan_mad(data), cfg.train_dataset, cfg)['is_valid']).sum())
    single, each = n // cfg.batch_size, math.ceil(n / 2) // cfg.batch_size  # full batches per epoch (drop_last)
    assert each < single
    ranks = sorted(re.findall(r'rank (\d+) of (\d+) \((\w+)\): (\d+) training batches', res.stdout))  # one line each
    assert ranks == [(str(r), '2', 'gloo', str(EPOCHS * each)) for r in (0, 1)], res.stdout[-2000:]

def test_rank0_alone_writes_the_run(ddp):
    work, data, before, _ = ddp
    log = pd.read_csv(work/'run'/'log.csv')
    assert list(log['epoch']) == list(range(EPOCHS)) and set(log['seed']) == {0}
    assert np.isfinite(log['train_loss']).all() and np.isfinite(log['valid_loss']).all()
    assert {'config.json', 'log.csv', 'last.pth', 'best.pth', 'state.json', 'export.pkl'} <= {p.name for p in (work/'run').iterdir()}
    assert sorted(p.name for p in work.iterdir()) == ['cwd', 'data', 'run'] and not any((work/'cwd').iterdir())
    assert snapshot(data) == before  # the data set is left as it was

def test_exported_detector_scores_images(ddp):
    work, data, _, _ = ddp
    img = sorted(data.rglob('*.png'))[0]
    scores = predict(load_exported(work/'run'/'export.pkl'), [img])
    assert len(scores) == 1 and 0 <= scores['score'][0] <= 1
