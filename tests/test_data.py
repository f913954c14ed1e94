"""ssl_mae.data: every layout, every bad input, subject splits, class weights and the fastai DataLoaders,
on tiny PNG/JPEG folders written here. Nothing may ever be written inside a data folder."""
import os
from itertools import chain
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from PIL import Image
from ssl_mae.config import MAEConfig
from ssl_mae.data import (train_table, CLASSES, COLUMNS, class_weights, mad_dls, mad_test_dl, mae_dls, protocol_tables,
                          scan_mad, split_by_subject, subject_ids)
from ssl_mae.io import BadImageError, load_rgb

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')

def img(path, seed=0, size=8, mode='RGB', ext=None):
    "Write a small random image (any PIL mode) to `path`; returns the path."
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)
    im = Image.fromarray(a)
    if mode == 'I;16': im = Image.fromarray(a[..., 0].astype(np.uint16) * 257)
    elif mode != 'RGB': im = im.convert(mode)
    im.save(path)
    return path

def mad_folder(root, layout='seed', styles=('LMA', 'MorDiff'), n=6, shared_bonafide=False):
    """A MAD folder: per style and split, 2 bona fide images of each of `n` subjects and morphs of neighbouring pairs
    (FRGC names); P2/train and P1/test hold different subjects. Returns the root."""
    root = Path(root)
    for si, style in enumerate(styles):
        for split, subj in (('P2', range(n)), ('P1', range(n, 2 * n))):
            files = [(0, f'{s:05d}-{k}.png', s * 10 + k + (0 if shared_bonafide else 1000 * si)) for s in subj for k in (1, 2)]
            files += [(1, f'{a:05d}d1-vs-{a + 1:05d}d2.png', 10**5 * (si + 1) + a) for a in list(subj)[:-1]]
            for lab, name, seed in files:
                sub = (Path(CLASSES[lab])/style/split if layout == 'seed'
                       else Path(style)/{'P2': 'train', 'P1': 'test'}[split]/CLASSES[lab])
                img(root/sub/name, seed)
    return root

def snapshot(root):
    "Every file and folder under `root` with its size and modification and change times."
    return sorted((str(p), (s := p.stat()).st_size, s.st_mtime_ns, s.st_ctime_ns) for p in Path(root).rglob('*'))

@pytest.fixture
def cfg(): return MAEConfig.tiny(img_size=16, patch_size=8, batch_size=4, seed=3, test_datasets=['LMA', 'MorDiff'])

# ---------------------------------------------------------------- layouts

def test_seed_layout(tmp_path):
    t = scan_mad(mad_folder(tmp_path))
    assert list(t.columns) == COLUMNS and t.attrs['layout'] == 'seed'
    assert t['label'].dtype == np.int64 and set(t['label']) == {0, 1}
    assert t.groupby(['style', 'split']).size().to_dict() == {(s, p): 17 for s in ('LMA', 'MorDiff') for p in ('P1', 'P2')}
    assert all(os.path.isabs(p) and Path(p).is_file() for p in t['path'])
    m = t[t['path'].str.endswith('00002d1-vs-00003d2.png')].iloc[0]
    assert (m['label'], m['subject']) == (1, '00002+00003')
    assert t.loc[t['path'].str.endswith('00004-2.png'), 'subject'].tolist() == ['00004'] * 2
    assert t.attrs['duplicates'] == [] and t.attrs['skipped'] == []

def test_style_first_layout(tmp_path):
    t = scan_mad(mad_folder(tmp_path, 'style_first'))
    assert t.attrs['layout'] == 'style_first'
    assert t.groupby(['style', 'split', 'label']).size().to_dict() == {
        (s, p, l): n for s in ('LMA', 'MorDiff') for p in ('test', 'train') for l, n in ((0, 12), (1, 5))}

def test_styles_filter(tmp_path):
    root = mad_folder(tmp_path)
    assert set(scan_mad(root, styles=['MorDiff'])['style']) == {'MorDiff'}
    with pytest.raises(ValueError, match=r"Style\(s\) \['FaceMorpher'\] not found"): scan_mad(root, styles=['LMA', 'FaceMorpher'])

def test_csv_manifest(tmp_path):
    for i, name in enumerate(['a.png', 'b.png', 'c.jpg', 'd.png', 'sub/e.png']): img(tmp_path/'imgs'/name, i)
    (tmp_path/'m.csv').write_text('path,label,style,split,subject\n'
        f'imgs/a.png,bonafide,X,train,s1\nimgs/b.png,attack,X,train,s1+s2\nimgs/c.jpg,0,X,test,s3\n'
        f'{tmp_path}/imgs/d.png,1,X,test,\nimgs/sub/e.png,morph,X,test,s4+s5\n')
    t = scan_mad(tmp_path/'m.csv')
    assert t.attrs['layout'] == 'csv'
    assert t['label'].tolist() == [0, 1, 0, 1, 1]
    assert t['split'].tolist() == ['train', 'train', 'test', 'test', 'test']
    assert t['subject'].tolist() == ['s1', 's1+s2', 's3', 'imgs/d.png', 's4+s5']  # empty subject: the file itself
    assert t['path'].tolist() == [str(tmp_path/'imgs'/n) for n in ['a.png', 'b.png', 'c.jpg', 'd.png', 'sub/e.png']]

def test_csv_minimal_and_frgc_subjects(tmp_path):
    for i, n in enumerate(['04478-2.jpg', '04424d82-vs-04559d102.jpg', 'face.png']): img(tmp_path/n, i)
    (tmp_path/'m.csv').write_text('path,label\n04478-2.jpg,bonafide\n04424d82-vs-04559d102.jpg,morph\nface.png,Bona_Fide\n')
    with pytest.warns(UserWarning, match='1 file names are not FRGC-style'): t = scan_mad(tmp_path/'m.csv')
    assert t['subject'].tolist() == ['04478', '04424+04559', 'face.png']
    assert t['style'].tolist() == [''] * 3 and t['split'].tolist() == [''] * 3

def test_csv_errors(tmp_path):
    img(tmp_path/'a.png')
    (tmp_path/'nolabel.csv').write_text('path\na.png\n')
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['label'\]"): scan_mad(tmp_path/'nolabel.csv')
    (tmp_path/'badlabel.csv').write_text('path,label\na.png,bonafide\na.png,fake\n')
    with pytest.raises(ValueError, match=r"line 3: label 'fake' is not one of bonafide\|attack\|morph\|0\|1"):
        scan_mad(tmp_path/'badlabel.csv')
    img(tmp_path/'b.png', 1)
    (tmp_path/'missing.csv').write_text('path,label\na.png,0\nb.png,1\ngone.png,1\n')
    with pytest.raises(FileNotFoundError, match='gone.png not found'): scan_mad(tmp_path/'missing.csv')
    with pytest.warns(UserWarning, match='Skipped 1'): assert len(scan_mad(tmp_path/'missing.csv', skip_bad=True)) == 2
    (tmp_path/'notes.txt').write_text('x')
    with pytest.raises(ValueError, match='not a CSV manifest'): scan_mad(tmp_path/'notes.txt')

# ---------------------------------------------------------------- bad input

def bad_file(path, kind):
    "Write a bad image file of `kind` at `path`."
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == 'zero-byte': path.write_bytes(b'')
    elif kind == 'non-image': path.write_text('this is not an image')
    else:  # truncated: half of a real file
        good = img(path.with_name('tmp' + path.suffix), size=64); data = good.read_bytes(); good.unlink()
        path.write_bytes(data[:len(data) // 2])

BAD = [('zero-byte', '.png', 'is empty'), ('non-image', '.png', 'is not an image'),
       ('truncated', '.png', 'truncated'), ('truncated', '.jpg', 'truncated')]

@pytest.mark.parametrize('kind,ext,msg', BAD)
def test_bad_file_raises_or_skips(tmp_path, kind, ext, msg):
    root = mad_folder(tmp_path/'d', n=3)
    bad = root/'morph'/'LMA'/'P2'/f'00000d1-vs-00009d2{ext}'
    bad_file(bad, kind)
    with pytest.raises(BadImageError, match=msg) as e: scan_mad(root)
    assert str(bad) in str(e.value) and 'skip_bad=True' in str(e.value)
    with pytest.raises(BadImageError, match=msg): load_rgb(bad)
    with pytest.warns(UserWarning, match=r'Skipped 1 bad image file'): t = scan_mad(root, skip_bad=True)
    assert [p for p, _ in t.attrs['skipped']] == [str(bad)] and str(bad) not in set(t['path'])
    assert len(t) == len(scan_mad(mad_folder(tmp_path/'clean', n=3)))

def test_ignored_files(tmp_path):
    root = mad_folder(tmp_path, n=3)
    (root/'README.txt').write_text('notes'); (root/'morph'/'LMA'/'P1'/'Thumbs.db').write_bytes(b'\0')
    bad_file(root/'bonafide'/'LMA'/'.cache'/'x.png', 'zero-byte')  # hidden folders are skipped
    img(root/'bonafied'/'LMA'/'P1'/'00001-1.png')  # misspelt label folder: left out with a warning
    with pytest.warns(UserWarning, match='1 images under .* outside the seed layout'): t = scan_mad(root)
    assert len(t) == len(scan_mad(mad_folder(tmp_path/'clean', n=3)))

@pytest.mark.parametrize('mode,ext', [('L', 'png'), ('RGBA', 'png'), ('P', 'png'), ('LA', 'png'), ('I;16', 'png'),
                                      ('L', 'jpg'), ('CMYK', 'jpg'), ('RGB', 'bmp')])
def test_odd_modes_become_rgb(tmp_path, mode, ext):
    p = img(tmp_path/f'x.{ext}', seed=1, mode=mode)
    im = load_rgb(p)
    assert im.mode == 'RGB' and im.size == (8, 8)
    if mode == 'I;16':  # 16-bit values scaled to 8 bits, not clipped
        want = np.random.default_rng(1).integers(0, 256, (8, 8, 3), np.uint8)[..., 0]
        assert Image.open(p).mode.startswith('I') and (np.asarray(im)[..., 1] == want).all()

def test_odd_modes_through_dataloaders(tmp_path, cfg):
    root = mad_folder(tmp_path, n=4, styles=('LMA',))
    for i, (mode, name) in enumerate([('L', '00000-1.png'), ('RGBA', '00001-1.png'), ('P', '00002-1.png'), ('I;16', '00003-1.png')]):
        img(root/'bonafide'/'LMA'/'P2'/name, seed=i, mode=mode)
    dls = mad_dls(scan_mad(root), 'LMA', cfg)
    for dl in (dls.train, dls.valid):
        for x, y in dl: assert x.shape[1:] == (3, 16, 16) and torch.isfinite(x).all()

@pytest.mark.parametrize('layout,missing', [('seed', 'morph'), ('seed', 'bonafide'), ('style_first', 'morph')])
def test_style_missing_a_class(tmp_path, layout, missing):
    root = mad_folder(tmp_path, layout, n=3)
    for d in (root.rglob(f'MorDiff/*/{missing}') if layout == 'style_first' else [root/missing/'MorDiff']):
        for f in d.rglob('*.png'): f.unlink()
    with pytest.warns(UserWarning, match=f"Style 'MorDiff' has no {missing} images .*{missing}.*styles you mean"):
        table = scan_mad(root)  # the rest of the set stays usable
    assert (table['style'] == 'LMA').any()
    with pytest.raises(ValueError, match=f"Style 'MorDiff' has no {missing.replace('bonafide', 'bona fide')} images to train on"):
        train_table(table, 'MorDiff')

def test_unknown_layout_and_missing_root(tmp_path):
    for i in range(3): img(tmp_path/'flat'/f'{i}.png', i)
    with pytest.raises(ValueError, match='Unknown layout in .*flat.*mae_dls'): scan_mad(tmp_path/'flat')
    (tmp_path/'empty').mkdir()
    with pytest.raises(ValueError, match='Unknown layout'): scan_mad(tmp_path/'empty')
    with pytest.raises(FileNotFoundError, match='Data folder .*nowhere not found'): scan_mad(tmp_path/'nowhere')
    (tmp_path/'nothing'/'bonafide'/'LMA').mkdir(parents=True)
    with pytest.raises(ValueError, match='No images found'): scan_mad(tmp_path/'nothing')
    with pytest.raises(FileNotFoundError, match='not found'): load_rgb(tmp_path/'nope.png')

# ---------------------------------------------------------------- duplicates

def test_duplicate_bonafide_across_styles(tmp_path):
    root = mad_folder(tmp_path, n=3, shared_bonafide=True)
    with pytest.warns(UserWarning, match=r'24 bona fide images in 12 groups of identical content \(styles LMA, MorDiff\)'):
        t = scan_mad(root)
    groups = t.attrs['duplicates']
    assert len(groups) == 12 and all(len(g) == 2 for g in groups)
    assert all({p.split(os.sep)[-3] for p in g} == {'LMA', 'MorDiff'} for g in groups)
    pd.concat([t, t])  # attrs hold plain lists, so pandas can still combine tables

# ---------------------------------------------------------------- splits

def subject_table(n_subjects=200, seed=0):
    "A table of 2 bona fide images per subject and one morph per random pair of subjects."
    rng = np.random.default_rng(seed)
    ids = [f'{i:05d}' for i in range(n_subjects)]
    pairs = rng.choice(n_subjects, (2 * n_subjects, 2))
    subs = [s for s in ids for _ in (1, 2)] + [f'{ids[a]}+{ids[b]}' for a, b in pairs if a != b]
    return pd.DataFrame(dict(path=[f'/x/{i}.png' for i in range(len(subs))], label=[int('+' in s) for s in subs],
                             style='LMA', split='P2', subject=subs))

@pytest.mark.parametrize('seed', [0, 1, 7])
def test_split_is_disjoint_by_subject(seed):
    t = split_by_subject(subject_table(), 0.85, seed)
    held = set(chain.from_iterable(map(subject_ids, t.loc[t['is_valid'] & (t['label'] == 0), 'subject'])))
    train_subjects = set(chain.from_iterable(map(subject_ids, t.loc[~t['is_valid'], 'subject'])))
    assert len(held) == 30 and not held & train_subjects  # no held-out face is seen in training
    assert all(set(subject_ids(s)) & held for s in t.loc[t['is_valid'], 'subject'])  # each valid image shows one
    bf = t[t['label'] == 0]
    assert bf['is_valid'].mean() == pytest.approx(0.15)
    assert t.loc[t['label'] == 1, 'is_valid'].mean() == pytest.approx(1 - 0.85**2, abs=0.06)

def test_split_is_deterministic():
    t = subject_table()
    a, b, c = (split_by_subject(t, 0.85, s)['is_valid'] for s in (5, 5, 6))
    assert a.equals(b) and not a.equals(c)
    assert split_by_subject(t.sample(frac=1, random_state=0), 0.85, 5)['is_valid'].sort_index().equals(a)  # row order

def test_split_one_class_and_bad_pct():
    t = subject_table(20)
    with pytest.raises(ValueError, match='left the training side with no morph images'):
        split_by_subject(t[t['label'] == 0], 0.85, 0)
    tiny = pd.DataFrame(dict(path=list('abcde'), label=[0, 0, 0, 0, 1], style='', split='', subject=[*'1234', '1+2']))
    sides = set()
    for seed in range(10):  # one subject of four is held out: whichever it is, one side lacks morphs
        with pytest.raises(ValueError, match=r'left the (\w+) side with no morph images: use more subjects') as e:
            split_by_subject(tiny, 0.75, seed)
        sides.add(str(e.value).split(' side')[0].split()[-1])
    assert sides == {'training', 'validation'}
    with pytest.raises(ValueError, match='train_pct=1.2'): split_by_subject(t, 1.2)

# ---------------------------------------------------------------- class weights

@pytest.mark.parametrize('bonafide_share,want', [(0.365, [1.37, 0.79]), (0.183, [2.73, 0.61])])
def test_class_weights_seed_values(bonafide_share, want):
    n = 10_000; nb = round(n * bonafide_share)
    w = class_weights(np.r_[np.zeros(nb), np.ones(n - nb)])
    assert np.round(w, 2).tolist() == want
    assert w[0] * nb == pytest.approx(w[1] * (n - nb))  # both classes weigh the same in total

def test_class_weights_errors():
    with pytest.raises(ValueError, match='no morph images'): class_weights([0, 0])
    with pytest.raises(ValueError, match='must be 0'): class_weights([0, 1, 2])

# ---------------------------------------------------------------- protocol and DataLoaders

def test_protocol_tables(tmp_path, cfg):
    t = scan_mad(mad_folder(tmp_path))
    train, tests = protocol_tables(t, 'LMA', cfg)
    assert set(train['style']) == {'LMA'} and set(train['split']) == {'P2'} and train['is_valid'].any()
    assert {s: set(x['split']) for s, x in tests.items()} == {'LMA': {'P1'}, 'MorDiff': {'P1'}}
    assert train.equals(protocol_tables(t, 'LMA', cfg)[0])
    with pytest.raises(ValueError, match="No images of style 'StyleGAN_IWBF'.*test_datasets"):
        protocol_tables(t, 'LMA', cfg.override(['test_datasets=LMA,StyleGAN_IWBF']))
    with pytest.raises(ValueError, match="Style 'LMA' has no images in split P2 or train"):
        protocol_tables(t[t['split'] != 'P2'], 'LMA', cfg)

def test_mad_dls_labels_and_transforms(tmp_path, cfg):
    t = scan_mad(mad_folder(tmp_path))
    dls = mad_dls(t, 'LMA', cfg)
    assert dls.vocab == list(CLASSES)
    items = dls.valid.items
    xs, ys = zip(*dls.valid)
    assert torch.cat(ys).tolist() == items['label'].tolist() and torch.cat(ys).dtype == torch.long
    assert torch.equal(torch.cat(xs), torch.cat([x for x, _ in dls.valid]))  # validation: no augmentation
    x1, x2 = (dls.train.one_batch()[0] for _ in range(2))
    assert not torch.equal(x1, x2)  # training batches are augmented (and shuffled)
    assert set(chain.from_iterable(map(subject_ids, dls.train.items['subject']))).isdisjoint(
        chain.from_iterable(map(subject_ids, items.loc[items['label'] == 0, 'subject'])))
    w = class_weights(dls.train.items['label'])
    assert len(w) == 2 and all(v > 0 for v in w)
    test = protocol_tables(t, 'LMA', cfg)[1]['MorDiff']
    ys = torch.cat([y for _, y in mad_test_dl(dls, test)])
    assert ys.tolist() == test['label'].tolist()
    assert all(len(b) == 1 for b in mad_test_dl(dls, test['path']))

def test_mae_dls_sources(tmp_path, cfg):
    root = mad_folder(tmp_path/'d', n=3)
    t = scan_mad(root)
    for src in (root, t, list(t['path'])):
        dls = mae_dls(src, cfg, valid_pct=0.2)
        b = dls.one_batch()
        assert len(b) == 1 and b[0].shape == (4, 3, 16, 16)
        assert len(dls.train_ds) + len(dls.valid_ds) == len(t) and len(dls.valid_ds) == round(0.2 * len(t))
    bad_file(root/'extra'/'x.png', 'truncated')
    with pytest.raises(BadImageError, match='x.png'): mae_dls(root, cfg)
    with pytest.warns(UserWarning, match='Skipped 1'): assert len(mae_dls(root, cfg, skip_bad=True).train_ds) > 0
    with pytest.raises(FileNotFoundError): mae_dls(tmp_path/'nowhere', cfg)

def test_nothing_written_in_data_folder(tmp_path, cfg):
    root = mad_folder(tmp_path/'d', n=3)
    img(root/'bonafide'/'LMA'/'P2'/'00000-9.png', mode='I;16'); bad_file(root/'morph'/'LMA'/'P2'/'bad.jpg', 'truncated')
    (tmp_path/'m.csv').write_text('path,label\n' + ''.join(f'{p},{p.parts[-4]}\n' for p in sorted(root.rglob('0*.png'))))
    before = snapshot(root)
    t = scan_mad(root, skip_bad=True)
    scan_mad(tmp_path/'m.csv')
    dls = mad_dls(t, 'LMA', cfg)
    for dl in (dls.train, dls.valid, mad_test_dl(dls, t)): list(dl)
    list(mae_dls(root, cfg, skip_bad=True).train)
    assert snapshot(root) == before

def test_kept_items_with_and_without_workers(tmp_path, cfg):
    "`CachedDL` serves the same labels in the same order over two epochs, in one process or with a worker."
    t = scan_mad(mad_folder(tmp_path))
    def two_epochs(workers):
        dls = mad_dls(t, 'LMA', cfg, num_workers=workers)
        ys = [torch.cat([y for _, y in dls.train]).tolist() for _ in range(2)]
        return ys, torch.cat([x for x, _ in dls.valid]), dls
    (ys0, v0, dls0), (ys1, v1, dls1) = two_epochs(0), two_epochs(1)
    assert ys0 == ys1 and ys0[0] != ys0[1]  # shuffled anew each epoch, the same way
    assert torch.equal(v0, v1)
    assert len(dls0.train.cache) > 0 and len(dls1.train.cache) == 0  # a worker keeps its items to itself
