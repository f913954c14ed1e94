"""Does pseudo-morph generation starve the model? Images per second of the training loop against the model step alone.

At the demo geometry (`MAEConfig.tiny`: 64 px, patch 8, batch 32 = 16 bona fide images + their 16 pseudo-morphs,
the joint reconstruction loss the demo trains with) on a 200-subject synthetic set, for two learners:
1. `pseudo_learner`: PNG loading and resizing (fastai; kept by `CachedDL` after the first epoch), `PseudoMorph`
   (pseudo-morphs + shared JPEG), the model step, fastai's callbacks;
2. `mad_learner` on real LMA morphs (batch 32), the loop every detector has.
Each learner trains `--epochs` epochs; after each epoch the model step alone (forward, joint loss, backward and
AdamW step on one fixed batch held in memory) is timed on the same model, so the loop and the step it is compared
with are measured a few seconds apart and the machine's drift cancels out of their ratio. The first epoch (warm-up)
is dropped (its ratio is printed apart: the loaders decode every image and fill their `CachedDL` then); the
medians over the others are printed, with the time `PseudoMorph.pairs` takes per batch.
Target: loop / step >= 0.9. CPU, fp32; about 2 minutes (data set included) on 2 cores.

    OMP_NUM_THREADS=2 python benchmarks/pseudo_speed.py [--threads 2] [--workers 0] [--epochs 4] [--steps 20]
"""
import argparse, tempfile, time, warnings
from dataclasses import replace
from pathlib import Path
import numpy as np, torch
from fastai.callback.core import Callback
from ssl_mae.config import MAEConfig
from ssl_mae.synth import make_dataset
from ssl_mae.data import scan_mad, mad_dls, train_table
from ssl_mae.learner import mad_learner
from ssl_mae.pseudo import pseudo_learner, pseudo_dls, PseudoMorph, other_captures

def _captures(learn) -> tuple:
    "The training loader and where its images' other captures are, as `PseudoMorph.pairs` takes them."
    return learn.dls.train, other_captures(learn.dls.train.items)

def fixed_batch(learn):
    "One training batch (images, labels) as the model sees it, made once."
    *xb, y = learn.dls.train.one_batch()
    pm = [c for c in learn.cbs if isinstance(c, PseudoMorph)]
    if not pm: return xb[0], y
    (x,), (y,) = pm[0].pairs(xb, y, torch.Generator().manual_seed(0), *_captures(learn))
    return x, y

def step_rate(learn, batch, steps:int) -> float:
    "Images per second of the model step alone on `batch`: forward, joint loss, backward, AdamW step."
    (x, y), model, w = batch, learn.model.train(), learn.cfg.recon_weight
    opt = torch.optim.AdamW(model.parameters(), 1e-6, betas=(.9, .95))
    def step():
        logits, recon = model(x, recon=True) if w > 0 else (model(x), 0.)
        (learn.loss_func(logits, y) + w*recon).backward()
        opt.step(); opt.zero_grad()
    step()
    t = time.perf_counter()
    for _ in range(steps): step()
    return steps*len(y)/(time.perf_counter() - t)

class Rates(Callback):
    "Per epoch: images/s of the training phase (validation not counted), then of the model step alone."
    order = 100
    def __init__(self, steps:int): self.steps, self.loop, self.step = steps, [], []
    def before_fit(self): self.batch = fixed_batch(self.learn)
    def before_train(self): self.images, self.t = 0, time.perf_counter()
    def after_batch(self):
        if self.training: self.images += len(self.yb[0])
    def after_train(self): self.loop.append(self.images/(time.perf_counter() - self.t))
    def after_epoch(self): self.step.append(step_rate(self.learn, self.batch, self.steps))

def rates(learn, epochs:int, steps:int) -> tuple:
    ("Median images/s of the loop and of the step, and the median ratio, over epochs 2..`epochs`; the first "
     "epoch's ratio (the loaders' `CachedDL` fills then).")
    r = Rates(steps)
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs, 1e-4, cbs=r)
    loop, step = np.array(r.loop), np.array(r.step)
    return np.median(loop[1:]), np.median(step[1:]), np.median(loop[1:]/step[1:]), loop[0]/step[0]

def pairs_ms(learn, steps:int) -> float:
    "Milliseconds `PseudoMorph.pairs` takes per training batch (after training: other captures come from the cache)."
    pm = [c for c in learn.cbs if isinstance(c, PseudoMorph)][0]
    *xb, y = learn.dls.train.one_batch()
    g, captures = torch.Generator().manual_seed(0), _captures(learn)
    pm.pairs(xb, y, g, *captures)  # warm-up: first-call costs are not per batch
    t = time.perf_counter()
    for _ in range(steps): pm.pairs(xb, y, g, *captures)
    return (time.perf_counter() - t)/steps*1e3

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=int, default=2, help='torch threads')
    p.add_argument('--workers', type=int, default=0, help='DataLoader worker processes')
    p.add_argument('--epochs', type=int, default=4); p.add_argument('--steps', type=int, default=20)
    a = p.parse_args()
    warnings.filterwarnings('ignore')
    torch.set_num_threads(a.threads)
    out = Path(tempfile.mkdtemp())
    t = time.time()
    table = scan_mad(make_dataset(out/'data', n_subjects=200, img_size=64, seed=0, progress=False))
    print(f"data: {len(table)} images in {time.time() - t:.0f} s; torch threads: {torch.get_num_threads()}, "
          f"DataLoader workers: {a.workers}")
    cfg = MAEConfig.tiny(img_size=64, seed=0, batch_size=32, pseudo='only')
    pseudo = pseudo_learner(table, cfg, path=out/'pseudo')
    if a.workers: pseudo.dls = pseudo_dls(table, cfg, num_workers=a.workers)
    real = mad_learner(mad_dls(train_table(table, 'LMA', cfg), cfg=cfg, num_workers=a.workers), cfg,
                       path=out/'real')
    print(f"\nimages/s at 64 px, batch {cfg.batch_size}, tiny ViT, joint loss; medians over epochs 2-{a.epochs}:")
    print(f"{'':38}{'loop':>8}{'step alone':>12}{'loop / step':>13}{'epoch 1':>9}")
    res = {name: rates(learn, a.epochs, a.steps) for name, learn in
           (('pseudo-morphs (pseudo_learner)', pseudo), ('real LMA morphs (mad_learner)', real))}
    for name, (loop, step, ratio, first) in res.items():
        print(f"  {name:36}{loop:8.1f}{step:12.1f}{ratio:13.2f}{first:9.2f}")
    step, ms = res['pseudo-morphs (pseudo_learner)'][1], pairs_ms(pseudo, a.steps)
    print(f"  PseudoMorph.pairs per batch: {ms:.1f} ms ({ms/(1e3*cfg.batch_size/step):.0%} of a model step)")

if __name__ == '__main__': main()
