"""Speed of the synthetic benchmark and its trivial sharpness baseline, measured side by side in one run.

1. The dense warp map: matplotlib's TriFinder (what `ssl_mae.synth.warp_maps` uses) against
   `scipy.spatial.Delaunay.find_simplex` with SciPy's own barycentric transforms; both must give the same maps.
2. `make_dataset` on the default set (120 subjects, about 2,000 images at 112 px): seconds, images per second.
3. Per style, the AUC of the trivial morph score -Laplacian variance on that set (0.5 = no information), beside
   the same AUC on a sample of the same images without the shared capture chain (`make_image(..., chain=False)`).

Run: `python benchmarks/synth_speed.py [--n-subjects 120] [--img-size 112] [--seed 0]`
"""
import argparse, os, tempfile, time
from pathlib import Path
import numpy as np
from scipy.spatial import Delaunay
from scipy.stats import mannwhitneyu
from ssl_mae.synth import (border_points, face, laplacian_var, make_dataset, make_image, plan, sharpness_auc,
                           warp_maps)

def scipy_maps(dst, src, size):
    "The reference: per-pixel triangle and barycentric weights from SciPy alone."
    tri = Delaunay(dst)
    p = np.mgrid[:size, :size][::-1].reshape(2, -1).T.astype(np.float64)
    s = tri.find_simplex(p)
    T = tri.transform[s]
    b = np.einsum('nij,nj->ni', T[:, :2], p - T[:, 2])
    q = np.einsum('nk,nkd->dn', np.c_[b, 1 - b.sum(1)], src[tri.simplices[s]])
    return q.reshape(2, size, size)

def per_call(f, n=30):
    t = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t)/n

def bench_warp(size, seed):
    (_, la), (_, lb) = face(seed, 1, 9, size), face(seed, 2, 9, size)
    pa, pb = np.r_[la, border_points(size)].astype(np.float64), np.r_[lb, border_points(size)].astype(np.float64)
    dst = (pa + pb)/2
    diff = np.abs(np.stack(warp_maps(dst, pa, size=size)[0]) - scipy_maps(dst, pa, size)).max()
    ours, ref = per_call(lambda: warp_maps(dst, pa, size=size)), per_call(lambda: scipy_maps(dst, pa, size))
    print(f'warp map, {size} px: TriFinder {ours*1e3:.2f} ms, scipy find_simplex {ref*1e3:.2f} ms, '
          f'ratio {ref/ours:.1f}x; max map difference {diff:.1e} px')

def bench_dataset(n_subjects, size, seed):
    with tempfile.TemporaryDirectory() as d:
        face.cache_clear()  # render every parent afresh
        t, c = time.perf_counter(), time.process_time()
        root = make_dataset(Path(d)/'set', n_subjects=n_subjects, img_size=size, seed=seed, progress=False)
        t, c = time.perf_counter() - t, time.process_time() - c
        n = len(list(root.rglob('*.png')))
        print(f'make_dataset: {n} images at {size} px in {t:.1f} s wall, {c:.1f} s CPU ({n/t:.0f} images/s; '
              f'{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})')
        aucs, raw = sharpness_auc(root), unchained_auc(n_subjects, size, seed)
        print('AUC of -Laplacian variance (0.5 = no information):  with the chain | without (every 4th file)')
        for st, v in aucs.items(): print(f'  {st:8s} {v:.3f} | {raw[st]:.3f}')

def unchained_auc(n_subjects, size, seed, every=4):
    "Per style, the sharpness AUC on every `every`-th planned file made without `degrade`."
    score = {}
    for path, st, who in plan(n_subjects, seed=seed)[::every]:
        score.setdefault(st, {}).setdefault(path.split('/')[0], []).append(
            -laplacian_var(make_image(path, st, who, seed, size, chain=False)))
    return {st: mannwhitneyu(v['morph'], v['bonafide']).statistic/(len(v['morph'])*len(v['bonafide']))
            for st, v in score.items()}

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n-subjects', type=int, default=120)
    ap.add_argument('--img-size', type=int, default=112)
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    bench_warp(a.img_size, a.seed)
    bench_dataset(a.n_subjects, a.img_size, a.seed)
