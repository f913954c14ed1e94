"""One MAE training step of ssl_mae vs HF ViTMAEForPreTraining, measured side by side in one run (CPU, fp32).

ViT-Tiny/16 encoder (192-d, 12 blocks, 3 heads), 128-d 4-block decoder, 224 px, batch 16, mask 0.75. Both models hold
the same weights (HF's, imported with `load_pretrained`) and use the same AdamW. Prints: the median step time of each
(steps interleaved, so both see the same machine load) and their ratio; the peak resident memory each adds during its
steps; the GFLOP/s each achieves against a large-matmul rate measured in the same run; and masking + un-shuffle
(one gather) against the SSL_MAE design's Python double loop at B=64, L=196.

Run: `python benchmarks/mae_step.py [--steps 7]` (transformers is needed: it is in the dev extra).
"""
import argparse, statistics, subprocess, sys, tempfile, time, warnings
from pathlib import Path
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import ViTMAEConfig, ViTMAEForPreTraining
from ssl_mae.model import MaskedAutoencoder, unshuffle
from ssl_mae.checkpoints import load_pretrained

GEOMETRY = dict(image_size=224, patch_size=16, hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                intermediate_size=768, decoder_hidden_size=128, decoder_num_hidden_layers=4,
                decoder_num_attention_heads=4, decoder_intermediate_size=512, mask_ratio=0.75)

def models(which=('ssl_mae', 'HF')):
    "{name: model} for the names in `which`, with the same (HF's) weights."
    torch.manual_seed(0)
    hf = ViTMAEForPreTraining(ViTMAEConfig(**GEOMETRY))
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = load_pretrained(d) if 'ssl_mae' in which else None
    return {k: m.train() for k, m in [('ssl_mae', ours), ('HF', hf)] if k in which}

def loss_of(name, model, x, noise):
    return model(x, noise=noise)[0] if name == 'ssl_mae' else model(pixel_values=x, noise=noise).loss

def step_fn(name, model, x, noise):
    "A closure doing one forward + backward + AdamW step of `model` on `x`."
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
    def step():
        loss_of(name, model, x, noise).backward()
        opt.step(); opt.zero_grad(set_to_none=True)
    return step

def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t

def rss_kib(field):
    "A field of /proc/self/status in KiB (VmRSS: now, VmHWM: peak since the last reset)."
    return next(int(l.split()[1]) for l in Path('/proc/self/status').read_text().splitlines() if l.startswith(field + ':'))

def peak_mib(name, threads, batch):
    "Peak resident memory (MiB) a training step adds, after one warm-up step, measured in a fresh process (Linux)."
    cmd = [sys.executable, __file__, '--peak', name, '--threads', str(threads), '--batch', str(batch)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    return float(r.stdout.split()[-1]) if r.returncode == 0 else float('nan')

def _peak(name, batch):
    "Print the peak memory of steps 2 and 3 of `name` over the resident memory before them (this process only)."
    x, noise = torch.randn(batch, 3, 224, 224), torch.rand(batch, 196)
    step = step_fn(name, models([name])[name], x, noise)
    step()  # warm-up: allocates the optimizer state
    Path('/proc/self/clear_refs').write_text('5')  # reset the high-water mark
    base = rss_kib('VmRSS')
    step(); step()
    print((rss_kib('VmHWM') - base) / 1024)

def step_flops(fn):
    "Floating-point operations of one call of `fn` (matmuls and attention, forward and backward)."
    with FlopCounterMode(display=False) as fc: fn()
    return fc.get_total_flops()

def matmul_fn(n=2048):
    "A large fp32 matmul (2 n^3 FLOP) to time beside the steps."
    a, b = torch.randn(n, n), torch.randn(n, n)
    return lambda: a @ b

def loop_unshuffle(kept, mask_token, ids_restore):
    "The SSL_MAE design's way: a Python double loop putting visible tokens and mask tokens back in order."
    B, L = ids_restore.shape
    out = torch.empty(B, L, kept.shape[-1])
    for b in range(B):
        for i in range(L):
            r = ids_restore[b, i]
            out[b, i] = kept[b, r] if r < kept.shape[1] else mask_token[0, 0]
    return out

def masking_ratio(B=64, L=196, D=128):
    "(vectorised ms, loop ms) for masking + un-shuffle of B x L tokens, checking both give the same tokens."
    x, tok, noise = torch.randn(B, L, D), torch.randn(1, 1, D), torch.rand(B, L)
    def vec():
        kept, _, ids_restore = MaskedAutoencoder.random_masking(x, 0.75, noise)
        return unshuffle(kept, tok, ids_restore)
    def loop():
        kept, _, ids_restore = MaskedAutoencoder.random_masking(x, 0.75, noise)
        return loop_unshuffle(kept, tok, ids_restore)
    assert torch.equal(vec(), loop())
    t_vec = statistics.median(timed(vec) for _ in range(50))
    t_loop = statistics.median(timed(loop) for _ in range(3))
    return t_vec * 1e3, t_loop * 1e3

def main(steps=7, batch=16, threads=None, peak=None):
    warnings.filterwarnings('ignore')
    if threads: torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    if peak: return _peak(peak, batch)
    print(f"torch {torch.__version__}, {threads} threads, fp32 CPU; batch {batch}, 224 px, "
          "ViT-Tiny/16 encoder + 128-d x 4 decoder, mask 0.75")
    ms = models()
    x, noise = torch.randn(batch, 3, 224, 224), torch.rand(batch, 196)
    with torch.no_grad(): losses = {k: loss_of(k, m, x, noise).item() for k, m in ms.items()}
    print("same weights, same noise: loss " + ', '.join(f'{k} {v:.6f}' for k, v in losses.items()))
    fns = {**{k: step_fn(k, m, x, noise) for k, m in ms.items()}, 'matmul': matmul_fn()}
    for f in fns.values(): f()  # warm-up
    times = {k: [] for k in fns}
    for i in range(steps):  # interleaved, alternating the order, so that all see the same machine load
        for k in (list(fns) if i % 2 else list(fns)[::-1]): times[k].append(timed(fns[k]))
    med = {k: statistics.median(v) for k, v in times.items()}
    flops = {k: step_flops(fns[k]) for k in ms}
    mm = 2 * 2048 ** 3 / med.pop('matmul') / 1e9
    mem = {k: peak_mib(k, threads, batch) for k in ms}
    print(f"\nstep (fwd + bwd + AdamW), median of {steps}:")
    for k in med: print(f"  {k:8s} {med[k] * 1e3:8.1f} ms   peak +{mem[k]:7.1f} MiB   {flops[k] / 1e9:6.2f} GFLOP"
                        f"   {flops[k] / med[k] / 1e9:6.1f} GFLOP/s = {flops[k] / med[k] / 1e9 / mm:5.1%} of matmul")
    print(f"  step time ssl_mae / HF = {med['ssl_mae'] / med['HF']:.2f}x (target <= 0.80x)")
    print(f"  peak memory ssl_mae / HF = {mem['ssl_mae'] / mem['HF']:.2f}x")
    print(f"  large matmul (2048^3, fp32, timed between the steps): {mm:.1f} GFLOP/s (target: ssl_mae >= 70 % of it)")
    t_vec, t_loop = masking_ratio()
    print(f"\nmasking + un-shuffle, B=64, L=196, D=128: gather {t_vec:.3f} ms, design's double loop {t_loop:.1f} ms, "
          f"{t_loop / t_vec:.0f}x faster (target >= 100x)")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--steps', type=int, default=7)
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--threads', type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument('--peak', choices=['ssl_mae', 'HF'], default=None, help='internal: print the peak memory of one model')
    main(**vars(p.parse_args()))
