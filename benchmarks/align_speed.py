"""Speed of face alignment (`ssl_mae align` / `ssl_mae.align.align_dataset`), the per-photo cost a user pays once,
measured side by side in one run on real photos (scikit-image's `astronaut`, moved by known rotations, scales and
shifts, saved as JPEG) at 224 px output:

1. per stage, in one process: decode (`read_photo`), face detection (dlib HOG on the photo resized to 512 px),
   68 landmarks, the similarity warp, PNG encode + write; ms per photo and share of the total, for 512 px photos and
   for 1536 px photos (a high-resolution capture such as FRLL's 1350 px);
2. the MMOD CNN detector (`detector='cnn'`) against HOG on a few photos: ms per photo and the ratio;
3. whole photos per second: `align_dataset` with one process (what `ssl_mae align` does by default); the same
   per-photo work once started in this process and in 2 worker processes (`n_workers=2`), and the ratio; and the
   time the 2 workers take to start (fresh Python processes that import `ssl_mae.align`, without torch, and load
   dlib's models), which `align_dataset(..., n_workers=2)` pays once per call.

Needs the faces extra (`pip install 'ssl_mae[faces]'`) and scikit-image. Takes about 2 minutes on 2 cores
(`--n 40`). Run: `python benchmarks/align_speed.py [--n 40] [--size 224]`
"""
import argparse, multiprocessing, os, tempfile, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import cv2, numpy as np
import skimage.data
from PIL import Image
from ssl_mae.config import AlignSettings
from ssl_mae.faces import _boxes, align, dlib_models, find_faces, read_photo
from ssl_mae.align import _align_file, align_dataset

def photos(root:Path, n:int, side:int) -> list[Path]:
    "`n` JPEG photos of the astronaut at `side` px, each rotated, scaled and shifted differently."
    img = cv2.resize(skimage.data.astronaut(), (side, side), interpolation=cv2.INTER_CUBIC)
    r, out = np.random.default_rng(0), []
    for i in range(n):
        M = cv2.getRotationMatrix2D((side/2, side/2), r.uniform(-12, 12), r.uniform(.9, 1.1))
        M[:, 2] += r.uniform(-.05, .05, 2)*side
        out.append(root/f'p{i:03d}.jpg')
        out[-1].parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(cv2.warpAffine(img, M, (side, side), borderMode=cv2.BORDER_REFLECT)).save(out[-1], quality=95)
    return out

def clock(f, *a):
    "(result, seconds) of `f(*a)`."
    t = time.perf_counter(); r = f(*a)
    return r, time.perf_counter() - t

def stages(files:list, size:int, out:Path) -> dict:
    "Mean ms per photo of each stage of `align_image` + writing, in this process."
    import dlib
    sp, t = dlib_models('hog')[1], dict(decode=0., detect=0., landmarks=0., warp=0., write=0.)
    for i, f in enumerate(files):
        img, s = clock(read_photo, f); t['decode'] += s
        boxes, s = clock(_boxes, img, 'hog', 512); t['detect'] += s
        box = max(boxes, key=lambda b: b[1])[0]
        rect = dlib.rectangle(*np.round(box - [0, 0, 1, 1]).astype(int).tolist())
        parts, s = clock(lambda: sp(img, rect).parts()); t['landmarks'] += s
        lms = np.array([(p.x, p.y) for p in parts], np.float32)
        (crop, _), s = clock(align, img, lms, size); t['warp'] += s
        _, s = clock(lambda: (out/f'{i}.png').write_bytes(cv2.imencode('.png', crop[..., ::-1])[1].tobytes()))
        t['write'] += s
    return {k: 1000*v/len(files) for k, v in t.items()}

def main(n:int, size:int):
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at the start; {n} photos per run, {size} px crops")
    dlib_models('hog'); dlib_models('cnn')  # loading the models is not part of a photo's cost
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        sets = {side: photos(d/f'src{side}', n, side) for side in (512, 1536)}
        (d/'png').mkdir()
        res = {side: stages(files, size, d/'png') for side, files in sets.items()}
        print(f"\n1. ms per photo by stage (share of the total), one process")
        print(f"{'stage':10s}" + ''.join(f"{f'{side} px photos':>24s}" for side in res))
        for k in res[512]:
            print(f"{k:10s}" + ''.join(f"{r[k]:14.1f} ({100*r[k]/sum(r.values()):4.1f} %)" for r in res.values()))
        print(f"{'total':10s}" + ''.join(f"{sum(r.values()):14.1f} ({1000/sum(r.values()):5.1f}/s)" for r in res.values()))
        few = [read_photo(f) for f in sets[512][:4]]
        hog = min(clock(find_faces, im, 'hog')[1] for im in few)
        cnn = min(clock(find_faces, im, 'cnn')[1] for im in few)
        found = sum(bool(find_faces(im, 'cnn')) for im in few)
        print(f"\n2. detection + landmarks on a 512 px photo (best of 4): HOG {1000*hog:.0f} ms, CNN {1000*cnn:.0f} ms "
              f"(ratio {cnn/hog:.0f}x; CNN found {found} of 4)")
        print(f"\n3. whole photos (decode, detect, landmarks, warp, PNG written whole), photos per second")
        for side, files in sets.items():
            s, sec = clock(align_dataset, files[0].parent, d/f'all{side}', size, .25, 'hog', 512, 1, False)
            jobs = [(f, d/f'w{side}'/f'{i}.png', AlignSettings(size)) for i, f in enumerate(files)]
            one = n/clock(lambda: list(map(_align_file, jobs)))[1]
            with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context('spawn')) as ex:
                _, start = clock(lambda: list(ex.map(dlib_models, ['hog']*2)))  # import ssl_mae, load the models
                two = n/clock(lambda: list(ex.map(_align_file, jobs, chunksize=4)))[1]
            print(f"  {side} px: align_dataset {n/sec:.1f}/s (aligned {s['aligned']} of {n}, skipped "
                  f"{s['skipped'] or 'none'}); once started, 1 process {one:.1f}/s, 2 worker processes {two:.1f}/s "
                  f"(ratio {two/one:.2f}); starting the 2 workers took {start:.1f} s")
    print(f"load {os.getloadavg()[0]:.1f} at the end")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=40, help='photos per set')
    p.add_argument('--size', type=int, default=224, help='crop side in pixels')
    main(**vars(p.parse_args()))
