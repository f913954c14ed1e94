"""The GPU switches, checked on the CPU: mixed precision trains and resumes from the run's config, an exported bf16
detector scores in float32 close to its own scores, `compile=True` trains (or fails in one line), and loaders with
worker processes serve the batches they serve without."""
import warnings
import numpy as np, pandas as pd, pytest, torch
from fastai.callback.core import Callback, CancelFitException
from fastai.torch_core import set_seed
from ssl_mae.config import MAEConfig
from ssl_mae.synth import make_dataset, SYNTH_STYLES
from ssl_mae.data import scan_mad, mae_dls, mad_dls, protocol_tables
from ssl_mae.callbacks import Precision, Compile, CompileError
from ssl_mae.learner import mae_learner, mad_learner, load_exported, predict, speed_callbacks
from ssl_mae.pseudo import pseudo_dls
from ssl_mae.runs import resume_run, CONFIG, LOG
from ssl_mae.cli import cli_pretrain, run_config

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('synth')/'data', n_subjects=16, img_size=32, seed=0, progress=False)

def tiny(**kw): return MAEConfig.tiny(img_size=32, seed=0, batch_size=16, test_datasets=list(SYNTH_STYLES), **kw)

class StopAfterFirstEpoch(Callback):
    "Cancel the fit after its first epoch (and its checkpoint), as a crash would end it."
    order = 100
    def after_epoch(self):
        if self.epoch == 0: raise CancelFitException

@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_mixed_precision_trains_and_resumes(data, tmp_path, precision):
    "Two epochs in mixed precision (joint loss), the second after resuming from the run's config.json: finite losses."
    cfg, run = tiny(precision=precision, recon_weight=0.5), tmp_path/'run'
    train, _ = protocol_tables(scan_mad(data), 'LMA', cfg)
    learn = mad_learner(mad_dls(train, cfg=cfg), cfg, path=run, cbs=StopAfterFirstEpoch())
    assert [type(cb) for cb in speed_callbacks(cfg)] == [Precision] and learn.precision.dtype == getattr(torch, {'bf16': 'bfloat16', 'fp16': 'float16'}[precision])
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(2)
    saved = MAEConfig.from_json(run/CONFIG)
    assert saved.precision == precision
    again = mad_learner(mad_dls(train, cfg=saved), saved, path=run)
    with again.no_bar(), again.no_logging(): again.fit_one_cycle(2, start_epoch=resume_run(again))
    log = pd.read_csv(run/LOG)
    assert list(log['epoch']) == [0, 1] and np.isfinite(log.drop(columns=['seed', 'epoch', 'time']).to_numpy()).all()
    assert not torch.is_autocast_enabled('cpu')

def test_precision_is_honoured_on_resume_from_the_command_line(data, tmp_path):
    "`key=value` sets the precision of a CLI run; `--resume` reads it back from the run's config.json."
    run = cli_pretrain(str(data), out=str(tmp_path), overrides=['img_size=32', 'num_epochs=1', 'precision=bf16', 'seed=0'])
    assert MAEConfig.from_json(run/CONFIG).precision == 'bf16'
    assert [type(cb) for cb in speed_callbacks(run_config(resume=run))] == [Precision]
    assert np.isfinite(pd.read_csv(run/LOG)['train_loss']).all()

def test_exported_bf16_detector_scores_in_fp32(data, tmp_path):
    "Trained in bf16, exported, loaded: no speed switch left, float32 scores within 1e-2 of the learner's bf16 ones."
    cfg = tiny(precision='bf16', recon_weight=0)
    train, tests = protocol_tables(scan_mad(data), 'LMA', cfg)
    learn = mad_learner(mad_dls(train, cfg=cfg), cfg, path=tmp_path/'run')
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(2)
    paths = list(tests['LMA']['path'][:24])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        own = predict(learn, paths)['score'].to_numpy()  # under bf16 autocast, as in training
        learn.export(tmp_path/'export.pkl')
        loaded = load_exported(tmp_path/'export.pkl')
        fp32 = predict(loaded, paths)['score'].to_numpy()
    assert not any(isinstance(cb, (Precision, Compile)) for cb in loaded.cbs)
    diff = np.abs(own - fp32).max()
    assert 0 < diff < 1e-2, diff  # bf16 did compute, and rounds the scores by less than 1e-2

def test_compile_trains_or_fails_in_one_line(data, tmp_path):
    "compile=True pretrains through torch.compile (here: a C++ compiler is on the machine), then exports as a plain model."
    cfg = tiny(compile=True)
    learn = mae_learner(mae_dls(scan_mad(data), cfg), cfg, path=tmp_path/'run', snapshots=False)
    try:
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    except CompileError as e:
        assert len(str(e).splitlines()) == 1 and 'compile=False' in str(e)
        pytest.skip(f"torch.compile does not work on this machine: {e}")
    assert np.isfinite(learn.recorder.values[-1]).all()
    assert learn.model._compiled_call_impl is None  # plain again after fit
    learn.export(tmp_path/'export.pkl')

def batches(dl, epochs:int=2) -> list:
    "Every batch `dl` serves in `epochs` epochs, from one seed of the global generators (augmentations)."
    set_seed(0)
    return [[t.as_subclass(torch.Tensor).clone() for t in b] for _ in range(epochs) for b in dl]

@pytest.mark.parametrize('loaders', ['mad_dls', 'mae_dls', 'pseudo_dls'])
def test_loaders_with_workers_serve_the_same_batches(data, loaders):
    "Shuffled, augmented training batches: the same with two worker processes as in one process."
    cfg, table = tiny(), scan_mad(data)
    make = {'mad_dls': lambda w: mad_dls(protocol_tables(table, 'LMA', cfg)[0], cfg=cfg, num_workers=w),
            'mae_dls': lambda w: mae_dls(table, cfg, num_workers=w),
            'pseudo_dls': lambda w: pseudo_dls(table, cfg, num_workers=w)}[loaders]
    one, two = make(0), make(2)
    assert (one.train.fake_l.num_workers, two.train.fake_l.num_workers) == (0, 2)
    a, b = batches(one.train), batches(two.train)
    assert len(a) == len(b) > 2
    for x, y in zip(a, b):
        for s, t in zip(x, y): torch.testing.assert_close(s, t, rtol=0, atol=0, equal_nan=True)
