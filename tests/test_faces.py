"""Face alignment end to end on real sample photos (scikit-image's `data` module, shipped in its wheel): equivariance
to a known rotation, scale and shift; `align_dataset` on every layout (seed, style-first, CSV manifest, plain tree)
with its report, resume and refusals; `ssl_mae align` as a subprocess; a missing `faces` extra."""
import hashlib, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import cv2, numpy as np, pandas as pd, pytest
import skimage.data
from PIL import Image
from ssl_mae import align as align_job
from ssl_mae.cli import main
from ssl_mae.data import scan_mad
from ssl_mae.align import REPORT, align_dataset, read_alignment
from ssl_mae.config import AlignSettings
from ssl_mae.faces import FaceError, align, align_image, anchors, find_faces, looks_aligned, read_photo, template
from ssl_mae.synth import make_dataset
from ssl_mae.landmarks import read_landmarks

EXE = Path(sys.executable).parent/'ssl_mae'
ASTRONAUT, COFFEE, CAMERA = skimage.data.astronaut(), skimage.data.coffee(), skimage.data.camera()
HEAD = ASTRONAUT[20:260, 100:340]
TWO = np.hstack([HEAD, HEAD[:, ::-1]])  # two faces of the same size, side by side

def moved(img, deg=12., scale=.8, shift=(30, -20)):
    "`img` rotated by `deg` about its centre, scaled and shifted (a known similarity), edges mirrored."
    h, w = img.shape[:2]
    M = cv2.getRotationMatrix2D((w/2, h/2), deg, scale); M[:, 2] += shift
    return cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

def save(root, rel, img):
    "Write `img` to `root/rel` (JPEG quality 95 or PNG by the extension); the path."
    p = Path(root)/rel
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(p, quality=95)
    return p

def tree(root):
    "{relative path: (bytes digest, mtime_ns)} of every file under `root`."
    return {p.relative_to(root).as_posix(): (hashlib.md5(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(Path(root).rglob('*')) if p.is_file()}

def contents(root): return {k: d for k, (d, _) in tree(root).items()}

def report(dst): return pd.read_csv(Path(dst)/REPORT).set_index('path')['status'].to_dict()

def ssl_mae(*words, env=None):
    "Run `ssl_mae WORDS` in a new process; the CompletedProcess."
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, '-m', 'ssl_mae.cli']
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore', **(env or {})}
    return subprocess.run([*cmd, *map(str, words)], capture_output=True, text=True, env=env, timeout=300)

def one_line_error(res, *needles):
    assert res.returncode == 2 and 'Traceback' not in res.stderr and res.stderr.count('\n') == 1, res.stderr
    for n in needles: assert n in res.stderr, res.stderr

@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    "A plain tree of real photos: two faces, a moved copy, photos with no face (coffee, a flat image, a landscape)."
    root = tmp_path_factory.mktemp('faces')/'photos'
    save(root, 'people/astronaut.jpg', ASTRONAUT)
    save(root, 'people/sub/moved.png', moved(ASTRONAUT))
    save(root, 'things/coffee.jpg', COFFEE)
    save(root, 'things/flat.png', np.full((200, 300, 3), 128, np.uint8))
    save(root, 'landscape.jpg', skimage.data.rocket())
    return root

@pytest.fixture(scope='module')
def aligned(photos):
    "`photos` aligned once with the defaults: (DST, summary)."
    dst = photos.parent/'aligned'
    return dst, align_dataset(photos, dst, progress=False)

# Equivariance: the same face moved by a known similarity aligns to the same crop

@pytest.mark.parametrize('deg,scale,shift', [(12, .8, (30, -20)), (-12, 1.2, (-25, 15)), (5, 1.5, (0, 40))])
def test_moved_photo_aligns_to_the_same_crop(deg, scale, shift):
    crop, lms = align_image(ASTRONAUT)
    crop2, lms2 = align_image(moved(ASTRONAUT, deg, scale, shift))
    assert np.abs(lms - lms2).max() < .02*224  # landmarks within 2 % of the crop side
    (x0, y0), (x1, y1) = lms.min(0).astype(int), lms.max(0).astype(int) + 1
    a, b = crop[y0:y1, x0:x1].astype(int), crop2[y0:y1, x0:x1]  # the face (the rest may lie outside a moved photo)
    assert np.abs(a - b).mean() < 8  # of 255
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > .97

def test_anchors_land_on_the_template_at_any_size_and_margin():
    f = find_faces(ASTRONAUT)[0]
    for size, margin in [(224, .25), (112, 0.), (384, .4)]:
        crop, lms = align(ASTRONAUT, f.lms, size, margin)
        assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
        assert np.abs(anchors(lms) - template(size, margin)).max() < .025*size  # least squares: not exact

def test_a_larger_photo_gives_the_same_crop():
    big = cv2.resize(ASTRONAUT, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    crop, lms = align_image(ASTRONAUT)
    crop3, lms3 = align_image(big)
    assert np.abs(lms - lms3).max() < .02*224 and np.abs(crop.astype(int) - crop3).mean() < 8

def test_exif_orientation_is_applied(tmp_path):
    sideways = np.ascontiguousarray(np.rot90(ASTRONAUT))  # what a camera held sideways stores, with orientation 6
    exif = Image.new('RGB', (1, 1)).getexif(); exif[0x0112] = 6
    Image.fromarray(sideways).save(tmp_path/'s.jpg', quality=95, exif=exif.tobytes())
    Image.fromarray(ASTRONAUT).save(tmp_path/'u.jpg', quality=95)
    assert np.abs(read_photo(tmp_path/'s.jpg').astype(int) - ASTRONAUT).mean() < 4  # upright again
    (c1, l1), (c2, l2) = align_image(read_photo(tmp_path/'s.jpg')), align_image(read_photo(tmp_path/'u.jpg'))
    assert np.abs(l1 - l2).max() < .02*224

def test_faces_that_cannot_be_aligned():
    for img in (COFFEE, np.full((100, 100, 3), 200, np.uint8)):
        with pytest.raises(FaceError) as e: align_image(img)
        assert e.value.status == 'no_face'
    assert len(find_faces(TWO)) == 2

    with pytest.raises(FaceError) as e: align_image(TWO)
    assert e.value.status == 'several_faces' and '2 faces' in str(e.value)

def test_looks_aligned_tells_crops_from_photos():
    crop, _ = align_image(ASTRONAUT)
    assert looks_aligned(find_faces(crop)[0].lms)
    raw = cv2.resize(ASTRONAUT, (224, 224), interpolation=cv2.INTER_AREA)
    assert not looks_aligned(find_faces(raw)[0].lms)
    crop_m0, _ = align_image(ASTRONAUT, AlignSettings(margin=0.))
    assert not looks_aligned(find_faces(crop_m0)[0].lms)  # aligned, but with another margin

# align_dataset on a plain tree: report, layout, PNG pixels, refusals

def test_plain_tree_report_and_layout(photos, aligned):
    dst, s = aligned
    assert (s['aligned'], s['new'], s['skipped']) == (2, 2, {'no_face': 3})
    assert report(dst) == {'landscape.jpg': 'no_face', 'things/coffee.jpg': 'no_face', 'things/flat.png': 'no_face'}
    lms = read_landmarks(dst)
    assert sorted(Path(p).relative_to(dst).as_posix() for p in lms) == ['people/astronaut.png', 'people/sub/moved.png']
    for p, v in lms.items():
        assert looks_aligned(v) and Image.open(p).size == (224, 224)
    rec = json.loads((dst/'aligned.json').read_text())
    assert rec['complete'] and AlignSettings.from_dict(rec['settings']) == AlignSettings()
    assert rec['source'] == str(photos)

def test_crop_on_disk_is_what_align_image_makes_of_the_raw_photo(photos, aligned):
    dst, _ = aligned
    for rel in ('people/astronaut.jpg', 'people/sub/moved.png'):
        crop, lms = align_image(read_photo(photos/rel))
        on_disk = np.asarray(Image.open(dst/Path(rel).with_suffix('.png')))
        assert np.array_equal(on_disk, crop)  # PNG: exactly the same pixels
        assert np.abs(read_landmarks(dst)[str(dst/Path(rel).with_suffix('.png'))] - lms).max() < 1e-3

def test_source_is_never_written(tmp_path):
    src = tmp_path/'src'
    save(src, 'a/astronaut.jpg', ASTRONAUT); save(src, 'b/coffee.jpg', COFFEE)
    before = tree(src)
    align_dataset(src, tmp_path/'dst', progress=False)
    assert tree(src) == before
    for dst in (src/'aligned', src, src/'a'):
        with pytest.raises(ValueError, match='inside the source data'): align_dataset(src, dst, progress=False)
    with pytest.raises(ValueError, match='is inside DST'): align_dataset(src, tmp_path, progress=False)
    assert tree(src) == before

def test_rerun_writes_nothing_and_refuses_other_settings(photos, aligned, tmp_path):
    dst, _ = aligned
    before = tree(dst)
    s = align_dataset(photos, dst, progress=False)
    assert tree(dst) == before and (s['aligned'], s['new'], s['skipped']) == (2, 0, {'no_face': 3})
    for kw in (dict(size=112), dict(margin=.1), dict(detector='cnn')):
        with pytest.raises(FileExistsError, match='aligned otherwise'): align_dataset(photos, dst, progress=False, **kw)
    other = tmp_path/'other'; save(other, 'x.jpg', ASTRONAUT)
    with pytest.raises(FileExistsError, match='source'): align_dataset(other, dst, progress=False)
    foreign = tmp_path/'foreign'; save(foreign, 'mine.txt.png', COFFEE)
    with pytest.raises(FileExistsError, match='did not make it'): align_dataset(photos, foreign, progress=False)
    assert tree(dst) == before

def test_interrupted_run_completes(photos, aligned, tmp_path, monkeypatch):
    ref, _ = aligned
    real, calls = align_job._align_file, []
    def stop_at_third(job):
        calls.append(job)
        if len(calls) == 3: raise KeyboardInterrupt
        return real(job)
    monkeypatch.setattr(align_job, '_align_file', stop_at_third)
    with pytest.raises(KeyboardInterrupt): align_dataset(photos, tmp_path/'dst', progress=False)
    monkeypatch.setattr(align_job, '_align_file', real)
    assert not json.loads((tmp_path/'dst'/'aligned.json').read_text())['complete']
    assert len(read_landmarks(tmp_path/'dst')) + len(report(tmp_path/'dst')) == 2  # saved on the way out
    s = align_dataset(photos, tmp_path/'dst', progress=False)
    assert (s['aligned'], s['new']) == (2, 1)
    assert contents(tmp_path/'dst') == contents(ref)

def test_killed_run_completes(photos, aligned, tmp_path):
    "A run killed without warning (SIGKILL) leaves only whole files; the next run finishes the same set."
    ref, _ = aligned
    many = tmp_path/'many'
    for i in range(12): save(many, f'p{i:02d}/astronaut.jpg', moved(ASTRONAUT, deg=i - 6, scale=.9))
    dst = tmp_path/'dst'
    cmd = [sys.executable, '-c', f"from ssl_mae.align import align_dataset; align_dataset({str(many)!r}, {str(dst)!r})"]
    p = subprocess.Popen(cmd, env={**os.environ, 'PYTHONWARNINGS': 'ignore'})
    t = time.time()
    while p.poll() is None and not list(dst.rglob('*.png')) and time.time() - t < 120: time.sleep(.05)
    p.send_signal(signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL and list(dst.rglob('*.png'))  # killed while it wrote crops
    for f in dst.rglob('*.png'): assert Image.open(f).size == (224, 224)
    s = align_dataset(many, dst, progress=False)
    assert s['aligned'] == 12 and not s['skipped']
    assert align_dataset(many, tmp_path/'ref', progress=False)['aligned'] == 12
    assert contents(dst) == contents(tmp_path/'ref')  # no temporary file left either

def test_nothing_aligned_is_one_clear_error(tmp_path):
    src = tmp_path/'src'
    save(src, 'coffee.jpg', COFFEE); save(src, 'x/flat.png', np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r'no face could be aligned in any of the 2 photos.*no_face 2'):
        align_dataset(src, tmp_path/'dst', progress=False)
    assert report(tmp_path/'dst') == {'coffee.jpg': 'no_face', 'x/flat.png': 'no_face'}
    with pytest.raises(ValueError, match='no image files'): align_dataset(tmp_path/'dst', tmp_path/'d2')
    (tmp_path/'empty').mkdir()
    with pytest.raises(ValueError, match='no image files'): align_dataset(tmp_path/'empty', tmp_path/'d3')
    with pytest.raises(FileNotFoundError, match='not found'): align_dataset(tmp_path/'missing', tmp_path/'d4')

def test_bad_files_several_faces_and_name_clashes_are_reported(tmp_path):
    src = tmp_path/'src'
    save(src, 'ok.jpg', ASTRONAUT)
    save(src, 'two.jpg', TWO)
    (src/'cut.jpg').write_bytes((src/'ok.jpg').read_bytes()[:2000])
    (src/'notes.jpg').write_text('not an image')
    save(src, 'ok.png', moved(ASTRONAUT))  # its crop would be ok.png too
    s = align_dataset(src, tmp_path/'dst', progress=False)
    assert s['aligned'] == 1
    assert report(tmp_path/'dst') == {'cut.jpg': 'unreadable', 'notes.jpg': 'unreadable', 'ok.png': 'name_clash',
                                     'two.jpg': 'several_faces'}
    assert s['skipped'] == {'unreadable': 2, 'name_clash': 1, 'several_faces': 1}

def test_two_workers_write_the_same_files(photos, aligned, tmp_path):
    ref, _ = aligned
    s = align_dataset(photos, tmp_path/'dst', n_workers=2, progress=False)
    assert s['aligned'] == 2 and contents(tmp_path/'dst') == contents(ref)

# Layouts of MAD data sets

def test_style_first_layout_and_manifest(tmp_path):
    src = tmp_path/'src'
    imgs = {'bonafide/a-1.jpg': ASTRONAUT, 'bonafide/a-2.jpg': moved(ASTRONAUT, 8, .9),
            'morph/a-vs-b.jpg': moved(ASTRONAUT, -8, 1.1), 'morph/cam-vs-b.jpg': CAMERA}
    for split in ('train', 'test'):
        for rel, img in imgs.items(): save(src, f'LMA/{split}/{rel}', img)
    s = align_dataset(src, tmp_path/'dst', progress=False)
    assert s['skipped'] == {'no_face': 2}  # dlib's HOG misses the cameraman (three-quarter view)
    a, b = scan_mad(src), scan_mad(tmp_path/'dst')
    rel = lambda t, root: {(Path(p).relative_to(root).with_suffix('').as_posix(), l, st, sp)
                           for p, l, st, sp in zip(t['path'], t['label'], t['style'], t['split'])}
    assert rel(b, tmp_path/'dst') == rel(a, src) - {(f'LMA/{sp}/morph/cam-vs-b', 1, 'LMA', sp) for sp in ('train', 'test')}
    # the same photos listed by a manifest in the data folder (one row twice)
    rows = [(f'LMA/train/{r}', r.split('/')[0], 'LMA', 'train') for r in imgs] + [('LMA/test/bonafide/a-1.jpg',
                                                                                 'bonafide', 'LMA', 'test')]*2
    pd.DataFrame(rows, columns=['path', 'label', 'style', 'split']).to_csv(src/'set.csv', index=False)
    s = align_dataset(src/'set.csv', tmp_path/'dst2', progress=False)
    assert (s['aligned'], s['skipped']) == (4, {'no_face': 1})
    out = pd.read_csv(tmp_path/'dst2'/'set.csv')
    assert len(out) == 5 and out['path'].str.startswith('LMA/').all() and out['path'].str.endswith('.png').all()
    t = scan_mad(tmp_path/'dst2'/'set.csv')
    assert set(t['path']) <= set(read_landmarks(tmp_path/'dst2')) and t['label'].tolist() == [0, 0, 1, 0, 0]
    assert report(tmp_path/'dst2') == {'LMA/train/morph/cam-vs-b.jpg': 'no_face'}
    assert read_alignment(tmp_path/'dst2'/'set.csv') == AlignSettings() and read_alignment(src/'set.csv') is None
    with pytest.raises(ValueError, match='inside the source data'): align_dataset(src/'set.csv', src/'x')

def test_synthetic_seed_layout(tmp_path):
    "The synthetic faces are drawings: dlib finds about half of them; every file is aligned or reported."
    src = make_dataset(tmp_path/'syn', n_subjects=4, img_size=112, styles=['LMA'], progress=False)
    s = align_dataset(src, tmp_path/'dst', size=112, progress=False)
    files = {p.relative_to(src).as_posix() for p in src.rglob('*.png')}
    done = {p.relative_to(tmp_path/'dst').as_posix() for p in (tmp_path/'dst').rglob('*.png')}
    assert done | set(report(tmp_path/'dst')) == files and not done & set(report(tmp_path/'dst'))
    assert 0 < s['aligned'] < len(files) and set(s['skipped']) == {'no_face'}
    assert {Path(p).parts[0] for p in done} == {'bonafide', 'morph'}  # seed layout: label/style/split/file
    assert all(len(Path(p).parts) == 4 for p in done)

def test_synthetic_set_aligned_with_its_own_landmarks(tmp_path):
    "landmarks='file': every face aligns with the exact landmarks (no detector); unlisted photos are reported."
    src = make_dataset(tmp_path/'syn', n_subjects=4, img_size=112, styles=['LMA'], progress=False)
    true = read_landmarks(src)
    s = align_dataset(src, tmp_path/'dst', size=64, margin=.1, landmarks='file', progress=False)
    assert (s['aligned'], s['skipped']) == (len(true), {})
    for f, lms in true.items():
        crop, moved_lms = align(Image.open(f), lms, 64, .1)
        out = tmp_path/'dst'/Path(f).relative_to(src)
        assert np.array_equal(np.asarray(Image.open(out)), crop)
        assert np.abs(read_landmarks(tmp_path/'dst')[str(out)] - moved_lms).max() < 1e-3
        assert np.abs(anchors(moved_lms) - template(64, .1)).max() < .05*64  # exact landmarks: on the template
    rec = json.loads((tmp_path/'dst'/'aligned.json').read_text())
    assert rec['landmarks'] == 'file' and read_alignment(tmp_path/'dst') == AlignSettings(size=64, margin=.1)
    with pytest.raises(FileExistsError, match="landmarks='file', not 'detect'"):
        align_dataset(src, tmp_path/'dst', size=64, margin=.1, progress=False)
    # a photo the file does not list is reported; a source without landmarks.csv is refused
    mixed = tmp_path/'mixed'
    shutil.copytree(src, mixed)
    save(mixed, 'bonafide/LMA/P1/astronaut.jpg', ASTRONAUT)
    s = align_dataset(mixed, tmp_path/'dst2', size=64, landmarks='file', progress=False)
    assert s['skipped'] == {'no_landmarks': 1} and report(tmp_path/'dst2') == {'bonafide/LMA/P1/astronaut.jpg':
                                                                               'no_landmarks'}
    save(tmp_path/'plain', 'a.jpg', ASTRONAUT)
    with pytest.raises(FileNotFoundError, match=r"needs .*plain/landmarks\.csv"):
        align_dataset(tmp_path/'plain', tmp_path/'dst3', landmarks='file', progress=False)
    assert not (tmp_path/'dst3').exists()
    with pytest.raises(ValueError, match='detect, file'): align_dataset(src, tmp_path/'dst4', landmarks='dlib')

def test_sets_made_before_the_landmarks_record_resume(photos, aligned, tmp_path):
    "An aligned.json without `landmarks` (phase 1) was made with the detector: it resumes as such."
    dst, _ = aligned
    old = tmp_path/'old'
    shutil.copytree(dst, old)
    rec = json.loads((old/'aligned.json').read_text()); rec.pop('landmarks')
    (old/'aligned.json').write_text(json.dumps(rec))
    assert align_dataset(photos, old, progress=False)['new'] == 0

# The command line

def test_cli_align(photos, tmp_path):
    "As a subprocess: a run with options (exit code 0, the counts), and nothing to align (exit code 2, one line)."
    res = ssl_mae('align', photos, tmp_path/'dst', '--size', 128, '--margin', .1)
    assert res.returncode == 0, res.stderr
    assert f"align: 2 faces aligned in {tmp_path/'dst'} (2 new); 3 photos skipped (no_face 3)" in res.stdout
    assert AlignSettings.from_dict(json.loads((tmp_path/'dst'/'aligned.json').read_text())['settings']) == \
        AlignSettings(size=128, margin=.1)
    assert Image.open(tmp_path/'dst'/'people'/'astronaut.png').size == (128, 128)
    one_line_error(ssl_mae('align', photos/'things', tmp_path/'none'), 'no face could be aligned', 'no_face 2')
    one_line_error(ssl_mae('align', photos, tmp_path/'x', '--landmarks', 'file'), 'landmarks.csv')

def test_cli_align_errors_in_process(photos, aligned, tmp_path, capsys):
    dst, _ = aligned
    assert main(['align', str(photos), str(dst)]) == 0 and '(0 new)' in capsys.readouterr().out  # resumed
    for words, needles in [([photos, dst, '--size', 128], ['aligned otherwise', 'size=224, not 128']),
                           ([photos, photos/'out'], ['inside the source data']),
                           ([photos, tmp_path/'x', '--detector', 'mtcnn'], ["detector='mtcnn'", 'hog, cnn']),
                           ([tmp_path/'missing', tmp_path/'x'], ['not found'])]:
        code, err = main(['align', *map(str, words)]), capsys.readouterr().err
        assert code == 2 and err.count('\n') == 1 and err.startswith('ssl_mae align: error:'), err
        for n in needles: assert n in err, err

def test_missing_extra_is_one_clear_error(photos, tmp_path):
    block = "import sys; sys.modules['dlib'] = None\n"  # as if dlib were not installed
    code = block + "import ssl_mae.faces, ssl_mae.cli\nsys.exit(ssl_mae.cli.main(sys.argv[1:]))"
    res = subprocess.run([sys.executable, '-c', code, 'align', photos, tmp_path/'dst'], capture_output=True,
                         text=True, env={**os.environ, 'PYTHONWARNINGS': 'ignore'}, timeout=300)
    one_line_error(res, "ssl_mae.faces needs dlib", "pip install 'ssl_mae[faces]'")
    assert not (tmp_path/'dst').exists()  # failed before writing anything
