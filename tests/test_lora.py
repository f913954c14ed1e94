"""LoRA fine-tuning (`adapter='lora'`) end to end on a tiny synthetic set: a killed run resumes with the pretrained
weights it started from, export round trips score identically, a merged export loads and scores without peft, the
freeze strategies freeze adapters, two DDP processes train the adapters only, and the CLI takes `adapter=lora`."""
import json, os, re, subprocess, sys, textwrap, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch, torch.distributed as dist
from fastai.callback.core import Callback
from ssl_mae.config import MAEConfig
from ssl_mae.synth import make_dataset, SYNTH_STYLES
from ssl_mae.data import scan_mad, mad_dls, protocol_tables
from ssl_mae.model import MaskedAutoencoder
from ssl_mae.learner import mad_learner, load_exported
from ssl_mae.lora import merge_lora
from ssl_mae.runs import resume_run, run_state
from ssl_mae.cli import main

ROOT = Path(__file__).resolve().parents[1]

def tiny(**kw): return MAEConfig.tiny(img_size=32, seed=0, batch_size=16, test_datasets=list(SYNTH_STYLES),
                                      adapter='lora', **kw)

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('synth')/'data', n_subjects=16, img_size=32, seed=0, progress=False)

@pytest.fixture(scope='module')
def encoder(tmp_path_factory):
    "A stand-in for a pretrained encoder (its own seed), as a facebookresearch-style checkpoint and as a module."
    torch.manual_seed(1)
    mae = MaskedAutoencoder.from_cfg(tiny())
    path = tmp_path_factory.mktemp('enc')/'encoder.pth'
    torch.save(dict(model=mae.state_dict()), path)
    return mae, path

def split(data, cfg):
    train, tests = protocol_tables(scan_mad(data), 'LMA', cfg)
    return mad_dls(train, cfg=cfg), tests

def fit(learn, n, **kw):
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(n, **kw)
    return learn

def lora_state(model): return {k: v.clone() for k, v in model.state_dict().items() if 'lora_' in k}
def frozen_same(model, mae):
    "True when the detector's pretrained weights equal `mae`'s (q/k/v split, LoRA layers around them)."
    D, enc = mae.cls_token.shape[-1], model.encoder
    checks = [(enc.patch_embed.proj.weight, mae.patch_embed.proj.weight), (enc.norm.weight, mae.norm.weight)]
    for b, m in zip(enc.blocks, mae.blocks):
        qkv = b.attn.qkv
        checks += [(qkv.q.base_layer.weight, m.attn.qkv.weight[:D]), (qkv.k.weight, m.attn.qkv.weight[D:2 * D]),
                   (qkv.v.base_layer.bias, m.attn.qkv.bias[2 * D:]), (b.mlp.fc2.weight, m.mlp.fc2.weight)]
    return all(torch.equal(a, b) for a, b in checks)

class Crash(Callback):
    "Interrupt training in the middle of epoch `at`, as Ctrl-C would."
    def __init__(self, at:int): self.at = at
    def after_batch(self):
        if self.training and self.epoch == self.at and self.iter == 1: raise KeyboardInterrupt

def test_interrupted_lora_run_resumes_from_its_own_weights(data, encoder, tmp_path):
    "Rebuilt without the encoder (as `ssl_mae finetune --resume` does), the run continues from last.pth's weights."
    mae, _ = encoder
    cfg, run = tiny(), tmp_path/'run'
    dls, _ = split(data, cfg)
    with pytest.raises(KeyboardInterrupt): fit(mad_learner(dls, cfg, encoder=mae, path=run, cbs=Crash(at=1)), 3)
    assert run_state(run)['epochs_trained'] == 1
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no 'random encoder' warning: the run's weights are loaded
        learn = mad_learner(dls, cfg, path=run)
    assert not frozen_same(learn.model, mae)  # a fresh random encoder until the checkpoint is loaded
    start = resume_run(learn, kind='finetune')
    saved = torch.load(run/'last.pth', weights_only=False)['model']
    assert start == 1 and frozen_same(learn.model, mae)
    assert all(torch.equal(v, saved[k]) for k, v in lora_state(learn.model).items())
    fit(learn, 3, start_epoch=start)
    assert list(pd.read_csv(run/'log.csv')['epoch']) == [0, 1, 2] and run_state(run)['epochs_trained'] == 3
    assert frozen_same(learn.model, mae)  # three epochs later the pretrained weights are still the encoder's

@pytest.fixture(scope='module')
def detector(data, encoder, tmp_path_factory):
    mae, _ = encoder
    cfg = tiny(recon_weight=0.5)
    dls, tests = split(data, cfg)
    return fit(mad_learner(dls, cfg, encoder=mae, path=tmp_path_factory.mktemp('ft')), 2), tests

SCORE_SCRIPT = textwrap.dedent('''
    import json, sys, warnings; warnings.filterwarnings('ignore')
    sys.modules['peft'] = None  # as on a machine without peft
    from ssl_mae.learner import predict
    print(json.dumps(predict(sys.argv[1], json.loads(sys.argv[2]))['score'].tolist()))
''')

def score_without_peft(export, paths):
    return subprocess.run([sys.executable, '-c', SCORE_SCRIPT, str(export), json.dumps(paths)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, 'PYTHONWARNINGS': 'ignore'})

def test_export_round_trip_and_merged_export(detector, encoder, tmp_path, exported_scores):
    learn, tests = detector
    assert frozen_same(learn.model, encoder[0]) and any(v.abs().sum() > 0 for v in lora_state(learn.model).values())
    paths = list(tests['MorDiff']['path'][:10])
    a, b = exported_scores(learn, paths)  # writes tmp_path/'export.pkl'
    np.testing.assert_array_equal(a['score'].to_numpy(), b['score'].to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        merged = load_exported(tmp_path/'export.pkl')
        merged.model = merge_lora(merged.model)
        merged.export(tmp_path/'merged.pkl')
    res = score_without_peft(tmp_path/'merged.pkl', paths)
    assert res.returncode == 0, res.stderr[-3000:]
    np.testing.assert_allclose(json.loads(res.stdout.splitlines()[-1]), a['score'].to_numpy(), atol=1e-5)
    assert score_without_peft(tmp_path/'export.pkl', paths).returncode != 0  # unmerged, it needs peft

@pytest.mark.parametrize('strategy, trained_blocks', [('backbone_only', []), ('freeze_except_lastN', [3])])
def test_freeze_strategies_freeze_adapters(data, encoder, tmp_path, strategy, trained_blocks):
    mae, _ = encoder
    cfg = tiny(freeze_strategy=strategy, freeze_lastN=1, recon_weight=0)
    learn = mad_learner(split(data, cfg)[0], cfg, encoder=mae, path=tmp_path/'run')
    head = {k: v.clone() for k, v in learn.model.head.state_dict().items()}
    fit(learn, 1)
    moved = sorted({int(k.split('.')[2]) for k, v in lora_state(learn.model).items() if 'lora_B' in k and v.any()})
    assert moved == trained_blocks and frozen_same(learn.model, mae)
    assert any(not torch.equal(v, head[k]) for k, v in learn.model.head.state_dict().items())

@pytest.mark.skipif(not dist.is_gloo_available(), reason='torch built without the gloo backend')
def test_two_ddp_processes_train_the_adapters_only(data, encoder, tmp_path):
    mae, enc_path = encoder
    env = {k: v for k, v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           str(ROOT/'examples'/'distributed_finetune.py'), str(data), str(tmp_path/'run'), '--encoder', str(enc_path),
           '--epochs', '2', 'img_size=32', 'batch_size=8', 'adapter=lora']
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**env, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert sorted(set(int(r) for r in re.findall(r'rank (\d+) of 2 \(gloo\)', res.stdout))) == [0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn = load_exported(tmp_path/'run'/'export.pkl')
    assert learn.cfg.adapter == 'lora' and frozen_same(learn.model, mae)
    assert any(v.abs().sum() > 0 for k, v in lora_state(learn.model).items() if 'lora_B' in k)

def test_cli_finetune_takes_adapter_overrides(data, encoder, tmp_path):
    _, enc_path = encoder
    words = ['finetune', str(data), '--out', str(tmp_path), '--encoder', str(enc_path), 'img_size=32',
             'batch_size=16', 'num_epochs=1', 'seed=0', 'adapter=lora', 'lora_rank=2', 'lora_targets=q,k,v']
    assert main(words) == 0
    run = next(tmp_path.glob('finetune-*'))
    assert json.loads((run/'config.json').read_text())['lora_targets'] == ['q', 'k', 'v']
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        qkv = load_exported(run/'export.pkl').model.encoder.blocks[0].attn.qkv
    assert all(getattr(qkv, t).r['default'] == 2 for t in 'qkv')
