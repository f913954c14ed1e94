"""Detectors of aligned faces on real photos (scikit-image's astronaut, turned and scaled, and pseudo morphs of it):
the exported detector records its alignment; `predict` and `evaluate` align raw photos exactly as the training set
was aligned (the same score to 1e-5), list the photos they cannot align, and warn when images are prepared otherwise
than the detector's training images; a detector of resized images needs no dlib; the command line records the
alignment and keeps its one-line errors. A plumbing test, not a quality test: the tiny detector learns little."""
import json, os, shutil, subprocess, sys, warnings
from dataclasses import replace
from pathlib import Path
import cv2, numpy as np, pandas as pd, pytest, skimage.data, torch
from PIL import Image
from ssl_mae.cli import main
from ssl_mae.config import MAEConfig
from ssl_mae.data import mad_dls, protocol_tables, scan_mad
from ssl_mae.align import align_dataset, read_alignment
from ssl_mae.config import AlignSettings
from ssl_mae.faces import align_image, read_photo
from ssl_mae.learner import alignment, evaluate, load_exported, mad_learner, predict, score_images

ASTRONAUT, COFFEE = skimage.data.astronaut(), skimage.data.coffee()
FACE = (223, 127)  # the astronaut's face centre (x, y)
SIZE = 128  # crop side of the aligned set (the tiny detector sees 64 px)

def turned(img, deg, scale, centre=FACE):
    "`img` rotated by `deg` and scaled about `centre`, edges mirrored."
    M = cv2.getRotationMatrix2D(centre, deg, scale)
    return cv2.warpAffine(img, M, img.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

def self_morph(img, zoom=1.1):
    "A pseudo morph: the photo blended half and half with itself zoomed about the face (ghosted features)."
    return ((img.astype(np.uint16) + turned(img, 0, zoom)) // 2).astype(np.uint8)

def save(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=95)
    return path

def quiet(f, *args, **kwargs):
    "`f(...)` and the messages of the warnings it gave."
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        res = f(*args, **kwargs)
    return res, [str(x.message) for x in w]

@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    "Raw JPEGs in the seed layout, FRGC-style names: subject i is the astronaut turned and scaled its own way."
    root = tmp_path_factory.mktemp('align-predict')/'photos'
    for i in range(11):
        b = turned(ASTRONAUT, -15 + 3*i, .75 + .04*i)
        split = 'P1' if i >= 8 else 'P2'
        save(root/f'bonafide/LMA/{split}/{i:05d}-1.jpg', b)
        save(root/f'morph/LMA/{split}/{i:05d}d1-vs-{i:05d}d2.jpg', self_morph(b))
    save(root/'bonafide/LMA/P1/00011-1.jpg', COFFEE)  # no face
    return root

@pytest.fixture(scope='module')
def aligned(photos):
    dst = photos.parent/'aligned'
    s = align_dataset(photos, dst, size=SIZE, progress=False)
    assert (s['aligned'], s['skipped']) == (22, {'no_face': 1})
    return dst

def spread(learn, files):
    "Turn the head's last layer to the main direction of its inputs over `files`, so that scores spread over (0, 1)."
    last = [m for m in learn.model.head.modules() if isinstance(m, torch.nn.Linear)][-1]
    feats = []
    hook = last.register_forward_hook(lambda m, i, o: feats.append(i[0].detach()))
    learn.get_preds(dl=learn.dls.test_dl(list(map(str, files))))
    hook.remove()
    x = torch.cat(feats)
    w = torch.linalg.svd(x - x.mean(0), full_matrices=False).Vh[0]
    w = 2*w/((x - x.mean(0)) @ w).std()  # logits with standard deviation 2 over `files`
    with torch.no_grad(): last.weight.copy_(w[None]); last.bias.fill_(-(x.mean(0) @ w).item())

@pytest.fixture(scope='module')
def detector(aligned):
    "A tiny detector trained on the aligned set, with its alignment in its config, exported."
    cfg = MAEConfig.tiny(seed=0, num_epochs=1, batch_size=8, test_datasets=['LMA'], align=read_alignment(aligned))
    train, _ = protocol_tables(scan_mad(aligned), 'LMA', cfg)
    learn = mad_learner(mad_dls(train, cfg=cfg), cfg, path=aligned.parent/'run')
    with learn.no_bar():
        learn.fit_one_cycle(1)
        spread(learn, sorted(aligned.rglob('*.png')))  # one epoch on 16 crops teaches little: scores must move
    learn.export(aligned.parent/'run'/'export.pkl')
    return aligned.parent/'run'/'export.pkl'

def crop_of(aligned, rel):
    "The crop `align_dataset` made of the photo at `rel`."
    return aligned/Path(rel).with_suffix('.png')

RAW = 'bonafide/LMA/P1/00008-1.jpg'

def test_the_exported_detector_records_its_alignment(detector):
    learn = load_exported(detector)
    assert alignment(learn) == AlignSettings(size=SIZE)
    assert json.loads((detector.parent/'config.json').read_text())['align'] == AlignSettings(size=SIZE).to_dict()

def test_raw_photo_and_its_aligned_crop_score_the_same(photos, aligned, detector, tmp_path):
    "The issue's claim: a raw JPEG, its crop in the aligned set, and that crop elsewhere get one score (to 1e-5)."
    loose = shutil.copy(crop_of(aligned, RAW), tmp_path/'loose.png')  # outside its set: its face is looked for
    p, msgs = quiet(predict, detector, [photos/RAW, crop_of(aligned, RAW), loose])
    assert (p['error'] == '').all()
    assert np.abs(p['score'] - p['score'][0]).max() < 1e-5, p
    assert msgs == [f"1 of 3 images were not aligned face crops: each was aligned as the detector's training faces "
                    f"were ({SIZE} px, margin 0.25, hog detector)"]
    how = score_images(load_exported(detector), [photos/RAW, crop_of(aligned, RAW), loose])['how']
    assert list(how) == ['photo', 'set', 'crop']
    alone = [predict(detector, [f])['score'][0] for f in (photos/RAW, loose)]  # one at a time: batches of one
    assert abs(alone[0] - p['score'][0]) < 1e-5 and abs(alone[1] - p['score'][0]) < 1e-5
    # the check can fail: other subjects score otherwise, and so does the raw photo only resized
    others = predict(detector, sorted((aligned/'bonafide'/'LMA'/'P2').glob('*.png')))['score']
    assert others.std() > 1e-2 and np.abs(others - p['score'][0]).min() > 1e-4
    plain = load_exported(detector)
    plain.cfg = replace(plain.cfg, align=None)
    assert abs(score_images(plain, [photos/RAW])['score'][0] - p['score'][0]) > 1e-3

def test_a_photo_without_a_face_gets_its_reason(photos, detector):
    p, _ = quiet(predict, detector, [photos/RAW, photos/'bonafide/LMA/P1/00011-1.jpg'])
    assert list(p['error']) == ['', 'no face found'] and p['score'].isna().tolist() == [False, True]
    assert p['decision'].isna().tolist() == [False, True]
    with pytest.raises(ValueError, match=r'None of the 1 images could be scored, e\.g\. .*00011-1\.jpg: no face found'):
        quiet(predict, detector, [photos/'bonafide/LMA/P1/00011-1.jpg'])

def test_evaluate_on_raw_photos_scores_like_the_aligned_set(photos, aligned, detector, tmp_path):
    "The raw test photos give the aligned set's scores; the photo without a face is left out and listed."
    learn = load_exported(detector)
    test = lambda root: protocol_tables(scan_mad(root), 'LMA', learn.cfg)[1]
    (raw, _), msgs = quiet(evaluate, learn, test(photos), out=tmp_path/'raw', plots=False)
    (ali, _), amsgs = quiet(evaluate, learn, test(aligned), out=tmp_path/'aligned', plots=False)
    key = lambda s, root: s.assign(path=[Path(p).relative_to(root).with_suffix('').as_posix() for p in s['path']])
    both = key(raw, photos).merge(key(ali, aligned), on=['path', 'style', 'label'])
    assert len(both) == len(ali) == len(raw) == 6
    assert np.abs(both['score_x'] - both['score_y']).max() < 1e-5
    left = pd.read_csv(tmp_path/'raw'/'unscored.csv')
    assert list(left['path']) == [str(photos/'bonafide/LMA/P1/00011-1.jpg')] and list(left['error']) == ['no face found']
    assert any('The metrics leave out 1 of 7 test photos whose face could not be aligned' in m for m in msgs), msgs
    assert any('6 of 7 images were not aligned face crops' in m for m in msgs), msgs
    assert amsgs == [] and not (tmp_path/'aligned'/'unscored.csv').exists()  # the set's crops: as they are

def test_a_set_aligned_otherwise_is_aligned_again_with_a_warning(photos, detector, tmp_path):
    other = tmp_path/'margin01'
    align_dataset(photos/'morph', other, size=SIZE, margin=.1, progress=False)
    files = sorted(other.rglob('*.png'))[:2]
    p, msgs = quiet(predict, detector, files)
    assert (p['error'] == '').all()
    assert any('holds faces aligned otherwise (margin=0.1, not 0.25)' in m for m in msgs), msgs
    assert any('2 of 2 images were not aligned face crops' in m for m in msgs), msgs

def test_a_detector_of_resized_images_warns_about_aligned_crops(photos, aligned, detector, tmp_path):
    plain = load_exported(detector)
    plain.cfg = replace(plain.cfg, align=None)
    in_set = sorted((aligned/'bonafide'/'LMA'/'P2').glob('*.png'))[:3]
    _, msgs = quiet(predict, plain, in_set)
    assert len(msgs) == 1 and msgs[0].startswith('The images look like faces of an aligned set (128 px, margin 0.25)')
    loose = [shutil.copy(f, tmp_path/f.name) for f in in_set]
    _, msgs = quiet(predict, plain, loose)
    assert len(msgs) == 1 and msgs[0].startswith('The images look like aligned face crops (margin about 0.2'), msgs
    _, msgs = quiet(predict, plain, sorted((photos/'bonafide'/'LMA'/'P2').glob('*.jpg'))[:3])
    assert msgs == []  # raw photos, as it was trained on

def run_python(code, *args):
    "Run `code` in a new Python process in which dlib cannot be imported."
    block = "import sys; sys.modules['dlib'] = None\n"  # as if the faces extra were not installed
    return subprocess.run([sys.executable, '-c', block + code, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, 'PYTHONWARNINGS': 'ignore'}, timeout=300)

def test_without_dlib(photos, aligned, detector, tmp_path):
    "A detector of resized images needs no dlib; one of aligned faces scores its set's crops, and names the extra."
    plain = load_exported(detector)
    plain.cfg = replace(plain.cfg, align=None)
    plain.export(tmp_path/'plain.pkl')
    code = ("from ssl_mae.learner import predict\nimport sys\n"
            "print(predict(sys.argv[1], sys.argv[2:])['score'].notna().sum())")
    for pkl, images in [(tmp_path/'plain.pkl', [photos/RAW]), (detector, [crop_of(aligned, RAW)])]:
        res = run_python(code, pkl, *images)
        assert res.returncode == 0 and res.stdout.split()[-1] == '1', res.stderr[-2000:]
    code = "import sys\nfrom ssl_mae.cli import main\nsys.exit(main(sys.argv[1:]))"
    res = run_python(code, 'predict', photos/RAW, '--model', detector, '--out', tmp_path/'p.csv')
    assert res.returncode == 2 and 'Traceback' not in res.stderr and res.stderr.count('\n') == 1, res.stderr
    assert "ssl_mae predict: error: ssl_mae.faces needs dlib" in res.stderr and "ssl_mae[faces]" in res.stderr
    assert not (tmp_path/'p.csv').exists()

def test_command_line(photos, aligned, tmp_path, capsys):
    "finetune records the data's alignment; predict and evaluate take raw photos; errors stay one line."
    words = ['--out', tmp_path, 'num_epochs=1', 'batch_size=8', 'seed=0', 'test_datasets=LMA']
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert main(['finetune', aligned, *map(str, words)]) == 0
        run = next(tmp_path.glob('finetune-*'))
        assert MAEConfig.from_json(run/'config.json').align == AlignSettings(size=SIZE).to_dict()
        assert main(['predict', str(photos/'bonafide'/'LMA'/'P1'), '--model', str(run/'export.pkl'),
                     '--out', str(tmp_path/'p.csv')]) == 0
        out = capsys.readouterr().out
        assert '3 images scored' in out and f"1 images could not be scored:\n  {photos}/bonafide/LMA/P1/00011-1.jpg: " \
            "no face found" in out, out
        assert main(['evaluate', str(photos), '--model', str(run/'export.pkl'), '--out', str(tmp_path/'ev')]) == 0
        assert len(pd.read_csv(next((tmp_path/'ev').glob('eval-*'))/'unscored.csv')) == 1
        assert main(['finetune', str(photos), *map(str, words)]) == 0  # raw photos: nothing recorded
    raw_run = sorted(tmp_path.glob('finetune-*'))[-1]
    assert raw_run != run and MAEConfig.from_json(raw_run/'config.json').align is None
    capsys.readouterr()
    assert main(['predict', str(photos/'bonafide'/'LMA'/'P1'/'00011-1.jpg'), '--model', str(run/'export.pkl'),
                 '--out', str(tmp_path/'none.csv')]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('ssl_mae predict: error: None of the 1 images could be scored'), err
