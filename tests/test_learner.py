"""Training end to end on a tiny synthetic set: a run killed mid-way resumes to the same number of epochs; mixed
precision and gradient accumulation do no harm on the CPU; export round trips; runs write only into their folder."""
import json, signal, subprocess, sys, textwrap, time, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from fastai.callback.training import GradientAccumulation
from ssl_mae.config import MAEConfig
from ssl_mae.synth import make_dataset, SYNTH_STYLES
from ssl_mae.data import scan_mad, mae_dls, mad_dls, protocol_tables
from ssl_mae.callbacks import JointMAE
from fastai.callback.core import Callback
from ssl_mae.learner import mae_learner, mad_learner, evaluate
from ssl_mae.runs import resume_run, run_state

def trained(run): return run_state(run).get('epochs_trained', 0)

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('synth')/'data', n_subjects=16, img_size=32, seed=0, progress=False)

def tiny(**kw): return MAEConfig.tiny(img_size=32, seed=0, batch_size=16, test_datasets=list(SYNTH_STYLES), **kw)

def folder_state(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(root).rglob('*'))

TRAIN_SCRIPT = textwrap.dedent('''
    import sys, time, warnings; warnings.filterwarnings('ignore')
    from fastai.callback.core import Callback
    from ssl_mae.config import MAEConfig
    from ssl_mae.data import scan_mad, mae_dls
    from ssl_mae.learner import mae_learner
    from ssl_mae.runs import resume_run
    class Slow(Callback):
        def after_batch(self): time.sleep(0.05)
    data, run, resume = sys.argv[1], sys.argv[2], sys.argv[3] == '1'
    cfg = MAEConfig.tiny(img_size=32, seed=0, batch_size=16)
    learn = mae_learner(mae_dls(scan_mad(data), cfg), cfg, path=run, snapshots=False, cbs=[] if resume else Slow())
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(4, 1e-3, start_epoch=resume_run(learn) if resume else 0)
''')

def test_killed_run_resumes_to_the_same_epochs(data, tmp_path):
    "Kill a pretraining run with SIGKILL after its first checkpoint, resume it, and get exactly 4 logged epochs."
    script, run = tmp_path/'train.py', tmp_path/'run'
    script.write_text(TRAIN_SCRIPT)
    before = folder_state(data)
    proc = subprocess.Popen([sys.executable, script, data, run, '0'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while trained(run) < 1 and proc.poll() is None and time.time() < deadline: time.sleep(0.05)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL); proc.wait()
    killed_at = trained(run)
    assert 1 <= killed_at < 4
    r = subprocess.run([sys.executable, script, data, run, '1'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    log = pd.read_csv(run/'log.csv')
    assert list(log['epoch']) == [0, 1, 2, 3] and set(log['seed']) == {0}
    assert trained(run) == 4 and (run/'best.pth').exists() and (run/'last.pth').exists()
    assert folder_state(data) == before  # nothing written into the data set

@pytest.fixture(scope='module')
def detector(data, tmp_path_factory):
    cfg = tiny(recon_weight=0.5)
    train, tests = protocol_tables(scan_mad(data), 'LMA', cfg)
    learn = mad_learner(mad_dls(train, cfg=cfg), cfg, path=tmp_path_factory.mktemp('ft'))
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(2)
    return learn, tests

def test_export_round_trip_gives_identical_scores(detector, exported_scores):
    learn, tests = detector
    a, b = exported_scores(learn, list(tests['MorDiff']['path'][:10]))
    np.testing.assert_array_equal(a['score'].to_numpy(), b['score'].to_numpy())
    assert set(a['decision']) <= {0, 1} and a['score'].between(0, 1).all()

def test_evaluate_writes_its_outputs(detector, tmp_path):
    learn, tests = detector
    with learn.no_bar(): scores, report = evaluate(learn, tests, train_style='LMA', out=tmp_path/'eval')
    assert {p.name for p in (tmp_path/'eval').iterdir()} == {'scores.csv', 'metrics.json', 'metrics.md', 'det.png', 'roc.png', 'scores.png'}
    assert list(pd.read_csv(tmp_path/'eval'/'scores.csv').columns) == ['train_style', 'path', 'style', 'label', 'score']
    assert set(report.table['style']) == {*SYNTH_STYLES, 'pooled'}
    assert len(json.loads((tmp_path/'eval'/'metrics.json').read_text())) == len(report.table)

@pytest.mark.parametrize('precision', ['to_fp16', 'to_bf16'])
def test_mixed_precision_is_harmless_on_cpu(data, tmp_path, precision):
    cfg = tiny()
    learn = getattr(mae_learner(mae_dls(scan_mad(data), cfg), cfg, path=tmp_path, snapshots=False), precision)()
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "CUDA is not available": autocast turns itself off on the CPU
        learn.fit(1, 1e-3)
    assert all(np.isfinite(v).all() for v in learn.recorder.values)

def test_gradient_accumulation(data, tmp_path):
    "Pretraining and joint fine-tuning both train with fastai's GradientAccumulation (the callbacks set yb)."
    cfg = tiny(recon_weight=1.0)
    mae = mae_learner(mae_dls(scan_mad(data), cfg), cfg, path=tmp_path/'pt', snapshots=False, cbs=GradientAccumulation(32))
    train, _ = protocol_tables(scan_mad(data), 'LMA', cfg)
    det = mad_learner(mad_dls(train, cfg=cfg), cfg, path=tmp_path/'ft', cbs=GradientAccumulation(32))
    for learn in (mae, det):
        w0 = [p.detach().clone() for p in learn.model.parameters() if p.requires_grad]
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
        assert any(not torch.equal(a, b) for a, b in zip(w0, (p for p in learn.model.parameters() if p.requires_grad)))
        assert np.isfinite(learn.recorder.values[-1][0])

class NaNRecon(Callback):
    "Make the reconstruction loss of training batch 1 of epoch 0 NaN, after `JointMAE` has split it off."
    order = JointMAE.order + 0.5
    def before_batch(self):
        if self.training and self.iter == 1: self.weights = [p.detach().clone() for p in self.learn.model.parameters()]
    def after_pred(self):
        if self.training and self.iter == 1: self.learn.joint_mae.recon = self.learn.joint_mae.recon * float('nan')

def test_non_finite_reconstruction_never_reaches_the_weights(data, tmp_path):
    "Joint training: a NaN reconstruction loss stops training before its backward pass (NonFiniteLoss runs after JointMAE)."
    cfg = tiny(recon_weight=1.0)
    train, _ = protocol_tables(scan_mad(data), 'LMA', cfg)
    nan = NaNRecon()
    learn = mad_learner(mad_dls(train, cfg=cfg), cfg, path=tmp_path, cbs=nan)
    with learn.no_bar(), learn.no_logging(), pytest.raises(FloatingPointError, match='the loss became nan at epoch 0, batch 1'):
        learn.fit_one_cycle(2)
    assert all(torch.equal(a, b) for a, b in zip(nan.weights, learn.model.parameters()))

def test_joint_training_logs_both_parts(detector):
    "The detector fixture trains with recon_weight 0.5: its log has the two parts of the training loss."
    learn, _ = detector
    log = pd.read_csv(learn.path/'log.csv')
    assert {'train_cls_loss', 'train_recon_loss'} <= set(log.columns)
    assert (log['train_recon_loss'] > 0).all() and np.isfinite(log['train_cls_loss']).all()

def test_exported_learner_keeps_its_config(detector, tmp_path):
    "`learn.cfg` survives export (the CLI reads the train style from it); an export without one is named as old."
    from ssl_mae.learner import load_exported
    learn, _ = detector
    learn.export(tmp_path/'export.pkl')
    assert load_exported(tmp_path/'export.pkl').cfg == learn.cfg
    cfg = learn.cfg
    try:
        del learn.cfg
        learn.export(tmp_path/'old.pkl')
    finally: learn.cfg = cfg
    with pytest.raises(ValueError, match=r'old\.pkl was exported by an older ssl_mae'): load_exported(tmp_path/'old.pkl')

def test_export_leaves_the_kept_images_behind(detector, tmp_path):
    "The loaders' `CachedDL` items stay in memory: an exported detector starts with empty loaders."
    from ssl_mae.data import CachedDL
    from ssl_mae.learner import load_exported
    learn, _ = detector
    assert len(learn.dls.train.cache) > 0 and learn.dls.train.cached_bytes > 0  # kept while training
    learn.export(tmp_path/'export.pkl')
    loaded = load_exported(tmp_path/'export.pkl')
    assert [(type(dl), len(dl.cache)) for dl in loaded.dls.loaders] == [(CachedDL, 0)]*2
    assert len(learn.dls.train.cache) > 0  # exporting did not empty the live learner's loaders
