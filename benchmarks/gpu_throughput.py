"""Training speed side by side: the full training loop against the bare model step, in fp32, bf16 and bf16 + compile.

For each task -- MAE pretraining (`mae_learner`), fine-tuning on LMA morphs (`mad_learner`) and on pseudo-morphs alone
(`pseudo_learner`, `pseudo='only'`) -- and each mode (`precision`, `compile` of `MAEConfig`), one run prints:
  - loop img/s: images per second of `learn.fit` on the synthetic benchmark's loaders (decoding, resizing, pseudo-morph
    pairing and JPEG, the model step), after `--warmup` steps (compiling, the loaders' first items);
  - step img/s: the same learner's step alone, replaying one prepared batch (no loading, no pairing);
  - loop / step (target on a GPU: >= 0.9), each mode against fp32 (target for bf16 on a GPU: >= 1.6), the model's
    FLOPs per trained image (PyTorch's FLOP counter on one forward and backward pass) and the model FLOP utilisation,
    MFU = FLOPs per image x step img/s / peak FLOP/s (target for ViT-B pretraining on a GPU: >= 40 %). The peak is
    `--peak-tflops` (e.g. 989 for an H100 SXM in bf16) or, when not given, measured by a large matmul in the mode's
    dtype on this device.
Images are counted as the model sees them: a pseudo-morph batch holds each bona fide image and its pseudo-morph.

Defaults: on a CPU the tiny preset at 64 px on 60 subjects, modes fp32 and bf16 (compiling takes about a minute a
model on 2 cores; add `--modes fp32 bf16 bf16+compile` to see it): about 30 s on 2 idle cores, data set included.
On a GPU the vit_base preset at 224 px, batch 128, all three modes, on 800 subjects written at 112 px and resized by
the loaders (making the data set is one CPU core's work: about 2 minutes), by `benchmarks/gpu_session.sh`; not run
on a GPU yet. A short epoch restarts the loader (and its workers): the loop is timed over as many epochs as the
steps need, validation left out.

    python benchmarks/gpu_throughput.py [--preset tiny|vit_base] [--img-size N] [--batch-size N] [--steps 20] \\
        [--warmup 5] [--modes fp32 bf16 bf16+compile] [--tasks pretrain finetune pseudo] [--peak-tflops X] \\
        [--n-subjects N] [--data-size PX] [--out DIR] [key=value ...]
"""
import argparse, tempfile, time, warnings
from dataclasses import replace
from pathlib import Path
import pandas as pd, torch
from torch.utils.flop_counter import FlopCounterMode
from fastai.callback.core import Callback, CancelFitException
from ssl_mae.config import MAEConfig
from ssl_mae.synth import make_dataset
from ssl_mae.data import scan_mad, mae_dls, mad_dls, protocol_tables
from ssl_mae.learner import mae_learner, mad_learner
from ssl_mae.pseudo import PseudoMorph, pseudo_learner
from ssl_mae.runs import RunCheckpoint, RunLog

MODES = {'fp32': dict(precision='fp32', compile=False), 'bf16': dict(precision='bf16', compile=False),
         'bf16+compile': dict(precision='bf16', compile=True), 'fp16': dict(precision='fp16', compile=False)}
GPU = torch.cuda.is_available()

def sync():
    if GPU: torch.cuda.synchronize()

class Clock(Callback):
    "Time `steps` training batches after `warmup` (validation left out), count their images, keep the first batch."
    order, run_valid = PseudoMorph.order + .5, False  # after the pairing, before what changes xb for the model
    def __init__(self, warmup:int, steps:int): self.warmup, self.steps = warmup, steps
    def before_fit(self): self.n, self.images, self.seconds, self.t0, self.batch = 0, 0, 0., None, None
    def before_train(self):
        if self.n >= self.warmup: self._start()  # a further epoch of the timed steps
    def before_batch(self):
        if self.batch is None: self.batch = (self.xb, self.yb)
        if self.n == self.warmup: self._start()
    def after_batch(self):
        if self.n >= self.warmup: self.images += len(self.xb[0])
        self.n += 1
        if self.n == self.warmup + self.steps: self._stop(); raise CancelFitException
    def after_train(self):
        if self.t0 is not None: self._stop()
    def _start(self): sync(); self.t0 = time.perf_counter()
    def _stop(self): sync(); self.seconds, self.t0 = self.seconds + time.perf_counter() - self.t0, None

class Replay(list):
    "A training 'loader' serving one prepared batch (inputs then targets) again and again."
    def __init__(self, xb, yb, n): super().__init__([(*xb, *yb)]*n); self.n_inp = len(xb)

def rate(learn, dl, warmup, steps) -> float:
    "Images per second of `learn`'s training steps on loader `dl` (several epochs if short) after `warmup` steps."
    clock, keep = Clock(warmup, steps), learn.dls.loaders[0]
    learn.dls.loaders[0] = dl
    try:
        with learn.added_cbs(clock), learn.no_bar(), learn.no_logging(): learn.fit(-(-(warmup + steps)//len(dl)) + 1)
    finally: learn.dls.loaders[0] = keep
    learn.clock_batch = clock.batch
    return clock.images/clock.seconds

def flops_per_image(learn) -> float:
    "FLOPs of one forward and backward pass of the model on the prepared batch, per image (fp32, eager)."
    (xb, _), m = learn.clock_batch, learn.model
    xb = tuple(x.as_subclass(torch.Tensor) for x in xb)
    with FlopCounterMode(display=False) as fc:
        out = m(*xb)
        (out[0] if isinstance(out, tuple) else out).float().sum().backward()
    m.zero_grad()
    return fc.get_total_flops()/len(xb[0])

def peak_flops(dtype) -> float:
    "FLOP/s of a large matmul in `dtype` on this device: a measured stand-in for the device's peak."
    n, dev = (8192, 'cuda') if GPU else (1024, 'cpu')
    a, b = (torch.randn(n, n, device=dev, dtype=dtype) for _ in range(2))
    for _ in range(2): a @ b
    sync(); t, k = time.perf_counter(), 10 if GPU else 3
    for _ in range(k): a @ b
    sync()
    return 2*n**3*k/(time.perf_counter() - t)

def learners(task, table, cfg, path) -> tuple:
    "(learner, its training loader) of `task` on the synthetic table."
    if task == 'pretrain':
        bona = table[(table['label'] == 0) & (table['split'] == 'P2')]
        learn = mae_learner(mae_dls(bona, cfg), cfg, path=path, snapshots=False)
    elif task == 'finetune':
        train, _ = protocol_tables(table, 'LMA', cfg)
        learn = mad_learner(mad_dls(train, cfg=cfg), cfg, path=path)
    else: learn = pseudo_learner(table, replace(cfg, pseudo='only'), path=path)
    # a benchmark, not a run: no checkpoints or log between the timed fits
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, (RunCheckpoint, RunLog))])
    return learn, learn.dls.train

def measure(task, mode, table, cfg, a, out) -> dict:
    "One line of the table: loop and step rates of `task` in `mode`."
    cfg = replace(cfg, **MODES[mode])
    learn, dl = learners(task, table, cfg, out/f'{task}-{mode}')
    loop = rate(learn, dl, a.warmup, a.steps)
    xb, yb = learn.clock_batch
    with learn.removed_cbs([cb for cb in learn.cbs if isinstance(cb, PseudoMorph)]):  # already paired
        step = rate(learn, Replay(xb, yb, a.warmup + a.steps), a.warmup, a.steps)
    row = dict(task=task, mode=mode, batch=len(xb[0]), loop_img_s=loop, step_img_s=step, loop_over_step=loop/step)
    if mode == 'fp32': row['flop_per_img'] = flops_per_image(learn)
    return row

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--preset', default='vit_base' if GPU else 'tiny', choices=['tiny', 'vit_base', 'vit_large'])
    p.add_argument('--img-size', type=int, default=None, help='default: 224 for ViT presets, 64 for tiny')
    p.add_argument('--batch-size', type=int, default=None, help='default: 128 on a GPU, 32 on a CPU')
    p.add_argument('--steps', type=int, default=30); p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--modes', nargs='+', default=['fp32', 'bf16', 'bf16+compile'] if GPU else ['fp32', 'bf16'],
                   choices=list(MODES))
    p.add_argument('--tasks', nargs='+', default=['pretrain', 'finetune', 'pseudo'],
                   choices=['pretrain', 'finetune', 'pseudo'])
    p.add_argument('--peak-tflops', type=float, default=None, help="the device's peak; default: a measured matmul")
    p.add_argument('--n-subjects', type=int, default=800 if GPU else 60)
    p.add_argument('--data-size', type=int, default=None, help="side of the images on disk, resized by the loaders "
                   "to --img-size; default: 112 on a GPU (a data set is one CPU core's work), else --img-size")
    p.add_argument('--out', default=None)
    p.add_argument('overrides', nargs='*', help='MAEConfig key=value overrides')
    a = p.parse_intermixed_args()
    warnings.filterwarnings('ignore')
    t0, out = time.time(), Path(a.out or tempfile.mkdtemp())
    size = a.img_size or (64 if a.preset == 'tiny' else 224)
    cfg = getattr(MAEConfig, a.preset)(img_size=size, seed=0, batch_size=a.batch_size or (128 if GPU else 32),
                                       recon_weight=0, test_datasets=['LMA']).override(a.overrides)
    table = scan_mad(make_dataset(out/'data', n_subjects=a.n_subjects, img_size=a.data_size or (112 if GPU else size),
                                  seed=0, progress=False))
    device = torch.cuda.get_device_name() if GPU else f'CPU, {torch.get_num_threads()} threads'
    rows = [measure(task, mode, table, cfg, a, out) for task in a.tasks for mode in a.modes]
    t = pd.DataFrame(rows)
    t['flop_per_img'] = t.groupby('task')['flop_per_img'].transform('max')
    t['vs_fp32'] = t['step_img_s']/t.groupby('task')['step_img_s'].transform('first')
    peaks = {m: a.peak_tflops*1e12 if a.peak_tflops else peak_flops(torch.bfloat16 if 'bf16' in m else
                                                                    torch.float16 if m == 'fp16' else torch.float32)
             for m in a.modes}
    t['peak_tflops'] = t['mode'].map(peaks)/1e12
    t['mfu_pct'] = 100*t['flop_per_img']*t['step_img_s']/(t['peak_tflops']*1e12)
    t['gflop_per_img'] = t.pop('flop_per_img')/1e9
    print(f"{a.preset} at {size} px, batch {cfg.batch_size}, {a.steps} timed steps after {a.warmup}; {device}; "
          f"peak: {'given' if a.peak_tflops else 'measured matmul'}")
    print(t.round(3).to_string(index=False))
    print(f"total wall time {time.time() - t0:.0f} s")
    return t

if __name__ == '__main__': main()
