"""Does pseudo-morph generation starve the model? Images per second of the training loop against the model step alone.

At the demo geometry (`MAEConfig.tiny`: 64 px, patch 8, batch 32 = 16 bona fide images + their 16 pseudo-morphs,
the joint reconstruction loss the demo trains with) on a 200-subject synthetic set, side by side in one run:
1. the model step alone: forward, joint loss, backward and AdamW step on one fixed batch held in memory;
2. the full `pseudo_learner` training epoch: PNG loading and resizing (fastai), `PseudoMorph` (pseudo-morphs +
   shared JPEG), the same model step, fastai's callbacks;
3. the same epoch on real LMA morphs (`mad_dls` + `mad_learner`, batch 32), the loop every detector has;
and the time `PseudoMorph.pairs` takes per batch. Target: (2) / (1) >= 0.9. CPU, fp32; about a minute (data set
included) on 2 cores.

    python benchmarks/pseudo_speed.py [--threads 2] [--steps 20]
"""
import argparse, tempfile, time, warnings
from dataclasses import replace
from pathlib import Path
import torch
from fastai.callback.core import Callback
from ssl_mae.config import MAEConfig
from ssl_mae.synth import make_dataset
from ssl_mae.data import scan_mad, mad_dls, train_table
from ssl_mae.learner import mad_learner
from ssl_mae.pseudo import pseudo_learner, PseudoMorph

class TrainClock(Callback):
    "Seconds and images of the training phase of each epoch (validation not counted)."
    order = 100
    def before_train(self): self.images, self.t = 0, time.perf_counter()
    def after_batch(self):
        if self.training: self.images += len(self.yb[0])
    def after_train(self): self.seconds = time.perf_counter() - self.t

def loop_rate(learn) -> float:
    "Images per second of one training epoch of `learn`."
    clock = TrainClock()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-4, cbs=clock)
    return clock.images/clock.seconds

def fixed_batch(learn):
    "One training batch (images, labels) as the model sees it, made once."
    x, *rest = learn.dls.train.one_batch()
    pm = [c for c in learn.cbs if isinstance(c, PseudoMorph)]
    if not pm: return x, rest[-1]
    (x,), (y,) = pm[0].pairs(x, rest[0], rest[1], torch.Generator().manual_seed(0))
    return x, y

def step_rate(learn, steps:int) -> float:
    "Images per second of the model step alone on a fixed batch: forward, joint loss, backward, AdamW step."
    x, y = fixed_batch(learn)
    model, w = learn.model.train(), learn.cfg.recon_weight
    opt = torch.optim.AdamW(model.parameters(), 1e-4, betas=(.9, .95))
    def step():
        logits, recon = model(x, recon=True) if w > 0 else (model(x), 0.)
        (learn.loss_func(logits, y) + w*recon).backward()
        opt.step(); opt.zero_grad()
    step()
    t = time.perf_counter()
    for _ in range(steps): step()
    return steps*len(y)/(time.perf_counter() - t)

def pairs_ms(learn, steps:int) -> float:
    "Milliseconds `PseudoMorph.pairs` takes per training batch."
    pm = [c for c in learn.cbs if isinstance(c, PseudoMorph)][0]
    x, lms, y = learn.dls.train.one_batch()
    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    for _ in range(steps): pm.pairs(x, lms, y, g)
    return (time.perf_counter() - t)/steps*1e3

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=int, default=2); p.add_argument('--steps', type=int, default=20)
    a = p.parse_args()
    warnings.filterwarnings('ignore')
    torch.set_num_threads(a.threads)
    out = Path(tempfile.mkdtemp())
    t = time.time()
    table = scan_mad(make_dataset(out/'data', n_subjects=200, img_size=64, seed=0, progress=False))
    print(f"data: {len(table)} images in {time.time() - t:.0f} s; torch threads: {torch.get_num_threads()}")
    cfg = MAEConfig.tiny(img_size=64, seed=0, batch_size=32)
    pseudo = pseudo_learner(table, replace(cfg, pseudo='only'), path=out/'pseudo')
    real = mad_learner(mad_dls(train_table(table, 'LMA', cfg), cfg=cfg), cfg, path=out/'real')
    step, ms = step_rate(pseudo, a.steps), pairs_ms(pseudo, a.steps)
    loop, ref = loop_rate(pseudo), loop_rate(real)
    print(f"\nimages/s at 64 px, batch {cfg.batch_size} (16 bona fide + 16 pseudo-morphs), tiny ViT, joint loss:")
    print(f"  model step alone (fixed batch in memory)      {step:8.1f}")
    print(f"  pseudo-morph training loop (pseudo_learner)   {loop:8.1f}   ratio to the step {loop/step:.2f}")
    print(f"  real-morph training loop (mad_learner, LMA)   {ref:8.1f}   ratio to the step {ref/step:.2f}")
    print(f"  PseudoMorph.pairs per batch: {ms:.1f} ms ({ms/(1e3*cfg.batch_size/step):.0%} of a model step)")

if __name__ == '__main__': main()
