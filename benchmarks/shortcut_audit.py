"""Which trivial cues tell pseudo-morphs from bona fide images, and do real morphs show them the same way round?

A bona-fide-only detector learns whatever separates its pseudo-morphs from their bona fide pairs. If a trivial cue
(sharpness, noise, JPEG grid, colour, spectrum) separates them one way and separates a real style's morphs the
other way, a detector that leans on it scores that style's morphs *below* its bona fide images: it is inverted
(D-EER above 50 %). This script measures each cue's AUC side by side, on one synthetic data set:
  - pseudo-morphs vs bona fide, as `PseudoMorph` pairs them for training (other captures and shared JPEG
    included), on the first `--n` training images;
  - each real style's P1 morphs vs its P1 bona fide images (at most `--n` of each, resized as a detector sees them).
AUC > 0.5: the cue is larger in (pseudo-)morphs. A cue whose pseudo and real AUCs lie on opposite sides of 0.5 by
more than 0.05 each is named in the column `opposite in`. No training: about 20 s at 64 px / 200 subjects and a
minute at 112 px / 800 subjects on 2 cores, data set included.

`--detector RUN/export.pkl` (a detector trained on the same data set, `--data`) also asks what the detector reads: it
scores `--n` P1 bona fide images of LMA as they are and changed in one way each (blurred, resampled, noised,
cross-dissolved with another capture of the subject put onto it, or with another person unaligned), and the real
morphs of each style, and prints each set's mean score and its AUC against the unchanged images (below 0.5: the
change makes an image look *more* bona fide to the detector).

    python benchmarks/shortcut_audit.py [--n-subjects 200] [--img-size 64] [--n 400] [--out DIR] \
        [--detector PKL] [key=value ...]
"""
import argparse, tempfile, time
import numpy as np, pandas as pd, torch, torch.nn.functional as F
from PIL import Image
from ssl_mae.config import MAEConfig
from ssl_mae.synth import make_dataset, SYNTH_STYLES
from ssl_mae.landmarks import read_landmarks
from ssl_mae.data import scan_mad
from ssl_mae.io import load_rgb
from ssl_mae.learner import load_exported
from ssl_mae.metrics import mad_metrics
from ssl_mae.metrics import shortcut_audit
from ssl_mae.pseudo import audit_pairs
from ssl_mae.pseudo_ops import gauss_blur, warp_onto


def images(paths, size:int) -> torch.Tensor:
    "Images at `paths` as (B, 3, size, size) in [0, 1], resized as the loaders do (squished, bilinear)."
    return torch.stack([torch.from_numpy(np.asarray(load_rgb(p).resize((size, size)))).permute(2, 0, 1)
                        for p in paths]).float()/255


def real_pairs(table, style:str, size:int, n:int) -> tuple:
    "(bona fide, morphs) of `style`'s P1 split, at most `n` of each."
    rows = table[(table['style'] == style) & (table['split'] == 'P1')]
    return tuple(images(rows[rows['label'] == k]['path'][:n], size) for k in (0, 1))


def scores(learn, x:torch.Tensor) -> np.ndarray:
    "P(morph) of images `x` (B, 3, H, W) in [0, 1] by the exported detector `learn` (float32, no grad)."
    c = learn.cfg
    mean, std = (torch.tensor(v)[:, None, None] for v in (c.mean, c.std))
    with torch.no_grad(): logits = learn.model((x - mean)/std).float()
    return (torch.sigmoid(logits).reshape(-1) if logits.shape[-1] == 1 else logits.softmax(-1)[:, 1]).numpy()

def probe(pkl, table, root, size:int, n:int) -> pd.DataFrame:
    "Mean score and AUC against the unchanged images of LMA P1 bona fide images changed one way each, and real morphs."
    learn, lm = load_exported(pkl), read_landmarks(root)
    bona = table[(table['style'] == 'LMA') & (table['split'] == 'P1') & (table['label'] == 0)].head(n)
    x = images(bona['path'], size)
    def px(p):
        with Image.open(p) as im: return (lm[str(p)] + .5)*size/im.size[0] - .5
    lms = torch.from_numpy(np.stack([px(p) for p in bona['path']])).float()
    subj = bona['subject'].to_numpy()  # each image's other capture of its subject (itself if none is here)
    other = [next((j for j in range(len(subj)) if subj[j] == subj[i] and j != i), i) for i in range(len(subj))]
    changed = {'unchanged': x, 'blurred (sigma 1 px)': gauss_blur(x, torch.ones(len(x))),
               'resampled (0.6x and back)': F.interpolate(F.interpolate(x, scale_factor=.6, mode='area'),
                                                         (size, size), mode='bilinear'),
               'noised (3/255)': (x + torch.randn(x.shape, generator=torch.Generator().manual_seed(0))*3/255).clamp(0, 1),
               'dissolved with another capture put onto it (0.5)': .5*x + .5*warp_onto(x[other], lms[other], lms),
               'dissolved with another person, unaligned (0.5)': .5*x + .5*x.roll(7, 0)}
    for s in SYNTH_STYLES: changed[f'real {s} morphs (P1)'] = real_pairs(table, s, size, n)[1]
    base, rows = scores(learn, x), {}
    for name, y in changed.items():
        s = scores(learn, y)
        auc = mad_metrics(torch.tensor(np.r_[base, s]), torch.tensor([0]*len(base) + [1]*len(s)))['auc']
        rows[name] = dict(mean_score=s.mean(), auc_vs_unchanged=auc)
    return pd.DataFrame(rows).T

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n-subjects', type=int, default=200); p.add_argument('--img-size', type=int, default=64)
    p.add_argument('--n', type=int, default=400); p.add_argument('--out', default=None)
    p.add_argument('--data', default=None, help="the data set to use: one make_dataset made with these "
                   "--n-subjects and --img-size (the demo's: runs/synth-800x112); default: made in --out")
    p.add_argument('--detector', default=None, help="a detector trained on this data set: what does it read?")
    p.add_argument('overrides', nargs='*', help='MAEConfig key=value overrides (the pseudo_* knobs)')
    a = p.parse_intermixed_args()
    t0 = time.time()
    out = a.out or tempfile.mkdtemp()
    root = a.data or f'{out}/data'
    table = scan_mad(make_dataset(root, n_subjects=a.n_subjects, img_size=a.img_size, seed=0, progress=False))
    cfg = MAEConfig.tiny(img_size=a.img_size, seed=0).override(a.overrides)
    cols = {'pseudo-morphs': shortcut_audit(*audit_pairs(table, cfg, a.n))}
    for s in SYNTH_STYLES: cols[f'{s} morphs'] = shortcut_audit(*real_pairs(table, s, a.img_size, a.n))
    t = pd.DataFrame(cols)
    far = lambda v: (v - .5).abs() > .05
    flip = lambda c: far(t['pseudo-morphs']) & far(t[c]) & ((t['pseudo-morphs'] > .5) != (t[c] > .5))
    t['opposite in'] = [', '.join(s for s in SYNTH_STYLES if flip(f'{s} morphs')[k]) for k in t.index]
    print(f"{a.n_subjects} subjects at {a.img_size} px, overrides {a.overrides}; AUC of each cue scoring "
          f"(pseudo-)morphs above bona fide images:\n{t.round(3).to_string()}")
    if a.detector:
        print(f"\nwhat {a.detector} reads (mean P(morph); AUC against the unchanged bona fide images):\n"
              f"{probe(a.detector, table, root, a.img_size, a.n).round(3).to_string()}")
    print(f"wall time {time.time() - t0:.0f} s")


if __name__ == '__main__': main()
