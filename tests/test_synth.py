"""The synthetic benchmark end to end: determinism for a seed (two runs, and a style alone == that style in a
full set), the seed layout and its subject-disjoint partitions, the manifest, and bad input."""
import json, re
from pathlib import Path
import cv2, numpy as np, pytest
from ssl_mae import synth
from ssl_mae.synth import SYNTH_STYLES, MARKER, make_dataset, plan
from ssl_mae.landmarks import read_landmarks

SMALL = dict(n_subjects=12, img_size=48, progress=False)
BONA, MORPH = re.compile(r'(\d{5})-(\d+)\.png'), re.compile(r'(\d{5})d(\d+)-vs-(\d{5})d(\d+)\.png')

def files(root):
    "Relative path -> bytes of every image of a set."
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob('*.png'))}

@pytest.fixture(scope='module')
def small_set(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('synth')/'set', **SMALL)

def test_same_seed_same_files(small_set, tmp_path):
    synth.face.cache_clear()  # rendered afresh, not from the first run's cache
    assert files(make_dataset(tmp_path/'again', **SMALL)) == files(small_set)
    other = files(make_dataset(tmp_path/'other', seed=1, **SMALL))
    assert sum(other.get(k) == v for k, v in files(small_set).items()) == 0  # another seed: every image differs

def test_one_style_alone_is_that_style_of_the_full_set(small_set, tmp_path):
    alone = make_dataset(tmp_path/'alone', styles='LMA_UBO', **SMALL)
    assert files(alone) == {k: v for k, v in files(small_set).items() if '/LMA_UBO/' in k}

def test_layout_names_partitions(small_set):
    subjects = {'P1': set(), 'P2': set()}
    for p in small_set.rglob('*.png'):
        label, style, part, name = p.relative_to(small_set).parts
        assert label in ('bonafide', 'morph') and style in SYNTH_STYLES and part in ('P1', 'P2')
        m = (BONA if label == 'bonafide' else MORPH).fullmatch(name)
        assert m, name
        ids = {int(g) for g in m.groups()[::2]}
        if label == 'morph': assert len(ids) == 2, name  # two different subjects
        subjects[part] |= ids
    assert not subjects['P1'] & subjects['P2'] and len(subjects['P1'] | subjects['P2']) == 12
    for style in SYNTH_STYLES:
        n = {l: len(list(small_set.glob(f'{l}/{style}/*/*.png'))) for l in ('bonafide', 'morph')}
        assert abs(n['bonafide']/sum(n.values()) - .36) < .01, n
    img = cv2.imread(str(next(small_set.glob('morph/LMA/P1/*.png'))), cv2.IMREAD_UNCHANGED)
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8

def test_bonafide_images_differ_across_styles(small_set):
    "Each style folder has its own captures: no byte-identical bona fide images across styles."
    seen = [v for k, v in files(small_set).items() if k.startswith('bonafide')]
    assert len(set(seen)) == len(seen)

def test_manifest(small_set):
    m = json.loads((small_set/MARKER).read_text())
    assert m['complete'] and m['params']['seed'] == 0 and m['params']['styles'] == list(SYNTH_STYLES)
    assert m['n_images'] == len(list(small_set.rglob('*.png'))) == len(plan(12))
    assert m['counts']['LMA']['bonafide'] == len(list(small_set.glob('bonafide/LMA/*/*.png')))
    assert set(m['styles']) == set(SYNTH_STYLES) and 'Poisson' in m['styles']['MorDiff']

def tree(root): return {str(p.relative_to(root)): p.read_bytes() for p in Path(root).rglob('*') if p.is_file()}

def test_reuse_resume_refuse(tmp_path, capsys):
    "Reused as it is; an interrupted set completed; other parameters and foreign folders refused; nothing deleted."
    root = make_dataset(tmp_path/'set', **SMALL)
    before = (root/MARKER).stat().st_mtime_ns
    assert make_dataset(root, **{**SMALL, 'progress': True}) == root and (root/MARKER).stat().st_mtime_ns == before
    assert capsys.readouterr().out.strip() == f"make_dataset: {root} already holds this set ({len(plan(12))} images): nothing written"
    (root/'bonafide'/'LMA'/'P1'/'my-photo.jpg').write_bytes(b'mine')  # the user's own files in the set
    (root/'morph'/'MyStyle').mkdir(); (root/'morph'/'MyStyle'/'x.png').write_bytes(b'mine too')
    lost = sorted(root.rglob('*.png'))[:3]
    for f in lost: f.unlink()  # an interrupted run
    full = tree(root)
    make_dataset(root, **{**SMALL, 'progress': True})
    assert f"wrote 3 images and landmarks.csv to {root} (the other {len(plan(12)) - 3} were there already)" in capsys.readouterr().out
    after = tree(root)
    assert all(after[k] == v for k, v in full.items() if not k.endswith(('.json', '.csv')))  # kept as they were
    assert {str(f.relative_to(root)) for f in lost} | set(full) == set(after)
    snapshot = tree(root)
    with pytest.raises(FileExistsError, match=re.escape('other parameters (n_subjects=12, not 8)')):
        make_dataset(root, **{**SMALL, 'n_subjects': 8})
    assert tree(root) == snapshot  # refused: nothing deleted, nothing written
    (tmp_path/'foreign').mkdir(); (tmp_path/'foreign'/'data.csv').write_text('path,label\n')
    with pytest.raises(FileExistsError, match='did not make it'): make_dataset(tmp_path/'foreign', **SMALL)
    assert [p.name for p in (tmp_path/'foreign').iterdir()] == ['data.csv']  # nothing written, nothing removed
    (tmp_path/'file').write_text('x')
    with pytest.raises(FileExistsError, match='is a file'): make_dataset(tmp_path/'file', **SMALL)

def test_landmarks_file(small_set):
    "One row per image, 68 points inside the image, the eyes above the mouth."
    lms = read_landmarks(small_set)
    assert set(lms) == {str(p) for p in small_set.rglob('*.png')}
    pts = np.stack(list(lms.values()))
    assert pts.shape[1:] == (68, 2) and (pts > -1).all() and (pts < SMALL['img_size']).all()
    assert (pts[:, 36:48, 1].mean(1) < pts[:, 48:68, 1].mean(1)).all()

@pytest.mark.parametrize('kw,msg', [(dict(n_subjects=3), 'n_subjects=3'), (dict(img_size=16), 'img_size=16'),
                                    (dict(styles=('LMA', 'MIPGAN_I')), "styles=('LMA', 'MIPGAN_I')"),
                                    (dict(styles=()), 'styles=()'), (dict(per_subject=0), 'per_subject=0'),
                                    (dict(bonafide_frac=1.0), 'bonafide_frac=1.0'),
                                    (dict(seed=-1), 'seed=-1')])
def test_bad_parameters(tmp_path, kw, msg):
    with pytest.raises(ValueError, match=re.escape(msg)): make_dataset(tmp_path/'x', **{**SMALL, **kw})
    assert not (tmp_path/'x').exists()
