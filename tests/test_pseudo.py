"""Pseudo-morph honesty checks on a small synthetic set: the shortcut audit (trivial features must not separate
pseudo-morphs from their bona fide pairs), nothing written into the data set, reproducible training, and detectors
trained on pseudo-morphs scoring real images through the usual `evaluate` / `predict`."""
import warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from ssl_mae.config import MAEConfig
from ssl_mae.synth import make_dataset
from ssl_mae.landmarks import read_landmarks
from ssl_mae.data import scan_mad, protocol_tables
from ssl_mae.io import load_rgb
from ssl_mae.learner import evaluate, predict
from ssl_mae.metrics import shortcut_audit
from ssl_mae.pseudo import pseudo_learner, pseudo_pool
from ssl_mae.pseudo_ops import jpeg, pseudo_morph

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('synth')/'data', n_subjects=60, img_size=64, seed=0, progress=False)

@pytest.fixture(scope='module')
def table(data):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return scan_mad(data)

def folder_state(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(root).rglob('*'))

def bona_batch(table, root):
    "Every bona fide image of the set (RGB in [0, 1]) with its landmarks."
    rows, lms = table[table['label'] == 0], read_landmarks(root)
    x = torch.stack([torch.from_numpy(np.array(load_rgb(p))).permute(2, 0, 1) for p in rows['path']])/255
    return x, torch.from_numpy(np.stack([lms[p] for p in rows['path']]))

def next_capture(subjects) -> np.ndarray:
    "For each image, the position of the next image of its subject (cyclically): its other capture."
    out = np.empty(len(subjects), int)
    for idx in pd.Series(range(len(subjects))).groupby(np.asarray(subjects)).agg(list):
        out[idx] = np.roll(idx, -1)
    return out

def test_shortcut_audit(table, data):
    "No trivial feature separates pseudo-morphs from their bona fide pairs (AUC within 0.35-0.65); a blur would."
    cfg = MAEConfig.tiny(img_size=64, seed=0)
    x, lms = bona_batch(table, data)
    assert len(x) >= 300
    other = next_capture(table.loc[table['label'] == 0, 'subject'])  # self-morphs blend it in, as in training
    assert (other != np.arange(len(x))).all()
    g = torch.Generator().manual_seed(0)
    fakes = pseudo_morph(x, lms, g, cfg, x[other], lms[other])[0]
    both = jpeg(torch.cat([x, fakes]), g, cfg.pseudo_jpeg_p, cfg.pseudo_jpeg_quality)
    auc = shortcut_audit(both[:len(x)], both[len(x):])
    assert all(.35 <= v <= .65 for v in auc.values()), auc
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode='replicate'), 3, 1)
    assert min(shortcut_audit(x, blurred).values()) < .35  # the audit can fail

def test_without_landmarks(table, data):
    "Images with unknown landmarks get ellipse masks: same shapes, a real change, no NaN."
    cfg = MAEConfig.tiny(img_size=64, seed=0)
    x, lms = bona_batch(table, data)
    fakes, w, kind = pseudo_morph(x[:16], torch.full_like(lms[:16], float('nan')), torch.Generator().manual_seed(0), cfg)
    assert torch.isfinite(fakes).all() and (fakes - x[:16]).abs().mean() > .005
    assert set(kind.tolist()) == {0, 1} and pseudo_pool(table, cfg, landmarks={})['lms'].isna().all()

def train(table, run, mode='only'):
    cfg = MAEConfig.tiny(img_size=64, seed=0, test_datasets=['LMA', 'LMA_UBO', 'MorDiff'], recon_weight=0,
                         pseudo=mode)
    learn = pseudo_learner(table, cfg, path=run)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(2)
    return learn, cfg

def test_training_writes_nothing_into_the_data_and_repeats(table, data, tmp_path):
    "Two runs with one seed give the same validation numbers; the data set folder is left untouched."
    before = folder_state(data)
    l1, cfg = train(table, tmp_path/'r1')
    l2, _ = train(table, tmp_path/'r2')
    assert folder_state(data) == before
    np.testing.assert_allclose(l1.recorder.values[-1][1:], l2.recorder.values[-1][1:], rtol=1e-5)
    assert {p.name for p in (tmp_path/'r1').iterdir()} >= {'config.json', 'log.csv', 'best.pth'}

@pytest.mark.parametrize('mode', ['only', 'mix'])
def test_scoring_real_images(table, tmp_path, mode):
    "A pseudo-morph detector is evaluated and used for prediction like any detector (one score per image)."
    learn, cfg = train(table, tmp_path/'run', mode)
    _, tests = protocol_tables(table, 'LMA', cfg)
    assert learn.cfg.train_style == {'only': 'pseudo', 'mix': 'LMA+pseudo'}[mode]
    with learn.no_bar(): scores, rep = evaluate(learn, tests, learn.cfg.train_style, tmp_path/'eval', plots=False)
    assert len(scores) == sum(map(len, tests.values())) and scores['score'].between(0, 1).all()
    assert set(rep.table['style']) >= set(cfg.test_datasets)
    unseen = set(rep.unseen()['unseen_styles'].iloc[0].split(', '))  # every style for 'only', LMA seen for 'mix'
    assert unseen == set(cfg.test_datasets) - ({'LMA'} if mode == 'mix' else set())
    learn.export(tmp_path/'export.pkl')
    paths = list(table['path'][:5])
    with learn.no_bar(): preds = predict(tmp_path/'export.pkl', paths)
    assert preds['path'].tolist() == paths and preds['score'].between(0, 1).all()

def test_scoring_images_in_memory(table, tmp_path):
    "A pseudo-morph detector scores images in memory (faces aligned for it) as it scores their files."
    from ssl_mae.data import RGBImage
    from ssl_mae.learner import _preds
    cfg = MAEConfig.tiny(img_size=64, seed=0, recon_weight=0, pseudo='only')
    learn = pseudo_learner(table, cfg, path=tmp_path/'run')
    paths = list(table['path'][:5])
    with learn.no_bar():
        from_files, from_images = _preds(learn, paths), _preds(learn, [RGBImage.create(p) for p in paths])
    assert from_files.std() > 0
    np.testing.assert_allclose(from_images, from_files, atol=1e-6)
