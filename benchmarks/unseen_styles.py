"""Morph styles a detector never saw: trained on LMA morphs, on pseudo-morphs only, or on both, from one MAE encoder.

On the synthetic benchmark (all three styles, seed 0), the tiny MAE is pretrained once on the P2 bona fide images of
every style (no morph, no test image), and the detectors of four arms are fine-tuned from it, each with the same
budget (optimiser steps of about `batch_size` images), checkpoints chosen on their own held-out validation pairs:
  (a) LMA: `mad_learner` on LMA P2 (bona fide + real LMA morphs): today's protocol;
  (b) pseudo: `pseudo_learner` with `pseudo='only'` on the P2 bona fide images of every style, no morph at all;
  (c) LMA+pseudo: `pseudo_learner` with `pseudo='mix'`: LMA P2 plus pseudo-morphs of its bona fide images;
  (d) two specialists of (b), one on self-blends alone (`pseudo_blend_p=1`), one on self-morphs alone
      (`pseudo_blend_p=0`), their scores averaged (`metrics.fuse_scores`): twice the fine-tuning of (b).
Each is tested on P1 of every style; printed side by side: the D-EER on its own held-out validation pairs (real
morphs for (a), pseudo-morphs of held-out subjects for (b) and (d)), D-EER and BPCER@APCER=10 % per style, the mean
and the worst over the styles the arm never trained on (all three for (b) and (d)), the wall times, and the shortcut
audit of the pseudo-morphs as `PseudoMorph` pairs them (trivial features' AUC, pseudo-morph vs bona fide). CPU, fp32.
The default run (1,200 subjects, 2,000 steps an arm) took 37 min with OMP_NUM_THREADS=1 on a 2-core machine shared
with another job, its data set already made by an earlier run (pretraining 8 min, arms (a)-(c) 5-6 min each, (d) 11
min); making the data set takes about 5 min more. `--n-subjects 600 --steps 1000` (the earlier default) took 24-37
min, data set included, before `CachedDL`.
`--seeds 0 1 2` fine-tunes every arm once per seed (the data set and the encoder stay those of seed 0) and adds the
mean and range over the seeds, and each arm's seed ensemble (its detectors of every seed, scores averaged);
`--encoder DIR/pretrain/best.pth` reuses the encoder of an earlier run with the same data set (`--out` is then a new
folder; link its `data` to the earlier one to skip making it): `--arms bd --seeds 1 2` with the default run's encoder
took 33 min (each seed: (b) 5-6 min, (d) 11 min), the machine shared with a lab run.
`patch_size=8` (8-pixel patches, 196 tokens) makes a fine-tuning step about 3.4 times slower: `--arms b` took 20.5 min
from an 8-pixel encoder, and pretraining one took 24 min beside another run; by these timings a default run
would take about two hours (not run).
`--img-size 224 --arms b` took 103 min (data 23 min, pretraining 41 min, (b) 39 min), one thread beside other
runs; by these timings a default run at 224 px would take about four hours (not run).

    python benchmarks/unseen_styles.py [--n-subjects 1200] [--img-size 112] [--pretrain 50] [--steps 2000] \\
        [--arms abcd] [--seeds 0] [--encoder FILE] [--out DIR] [key=value ...]
        (key=value: MAEConfig overrides on the defaults below, e.g. pseudo_blend_p=0.3)
"""
import argparse, tempfile, time, warnings
from dataclasses import replace
from pathlib import Path
import numpy as np, pandas as pd
from ssl_mae.config import MAEConfig
from ssl_mae.synth import make_dataset, SYNTH_STYLES
from ssl_mae.data import scan_mad, mae_dls, mad_dls, protocol_tables
from ssl_mae.learner import mae_learner, mad_learner, evaluate, load_encoder
from ssl_mae.metrics import fuse_scores, style_report, trained_styles
from ssl_mae.metrics import shortcut_audit
from ssl_mae.pseudo import pseudo_learner, audit_pairs

# arm -> (train style, its detectors as (pseudo mode, config overrides)); (d) fuses the scores of its two
ARMS = {'a': ('LMA', [(None, [])]), 'b': ('pseudo', [('only', [])]), 'c': ('LMA+pseudo', [('mix', [])]),
        'd': ('pseudo (2 specialists fused)', [('only', ['pseudo_blend_p=1']), ('only', ['pseudo_blend_p=0'])])}
DEFAULTS = ['patch_size=16', 'global_pool=max', 'recon_weight=0', 'learning_rate=5e-4', 'drop_path=0.1']

def best_valid(learn) -> float:
    "The lowest D-EER (%) on the run's held-out validation pairs: the epoch its checkpoint comes from."
    i = learn.recorder.metric_names.index('d_eer') - 1  # values leave out the epoch column
    return 100*min(v[i] for v in learn.recorder.values)

def detector(mode, table, train, cfg, encoder, path):
    "A learner fine-tuning from `encoder`: on real morphs (`mode` None) or pseudo-morphs ('only', 'mix')."
    if mode: return pseudo_learner(table, replace(cfg, pseudo=mode), encoder=encoder, path=path)
    return mad_learner(mad_dls(train, cfg=cfg), cfg, encoder=encoder, path=path)

def run_arm(arm, table, train, tests, cfg, encoder, steps, out) -> tuple:
    ("(scores of `arm` on `tests`, held-out validation D-EERs of its detectors): each trained for about `steps` "
     "steps with `cfg.seed`.")
    scores, vals, tag = [], [], f'{arm}{{}}-s{cfg.seed}'
    for i, (mode, ov) in enumerate(ARMS[arm][1]):
        learn = detector(mode, table, train, cfg.override(ov), encoder, out/f'arm-{tag.format(i)}')
        epochs = max(1, round(steps/len(learn.dls.train)))
        with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs)
        vals.append(best_valid(learn))  # before `evaluate`, whose scoring passes reset the recorder
        with learn.no_bar(): scores.append(evaluate(learn, tests, ARMS[arm][0], out/f'eval-{tag.format(i)}', plots=False)[0])
        print(f"({arm}) {ARMS[arm][0]} {' '.join(ov)}, seed {cfg.seed}: {epochs} epochs x {len(learn.dls.train)} steps",
              flush=True)
    return (fuse_scores(scores) if len(scores) > 1 else scores[0]), vals

def column(arm, seed) -> str: return f'({arm}) {ARMS[arm][0]}, seed {seed}'

def arm_row(arm, r, vals, minutes) -> dict:
    ("One arm's line of the table from its `style_report` table `r`: validation D-EERs, D-EER and BPCER10 per "
     "style, unseen mean and worst, minutes.")
    unseen = [s for s in SYNTH_STYLES if s not in trained_styles(ARMS[arm][0])]
    row = {f'{s} {k}': 100*r.loc[s, c] for s in SYNTH_STYLES for k, c in (('D-EER', 'd_eer'), ('BPCER10', 'bpcer_at_apcer_10'))}
    de = [100*r.loc[s, 'd_eer'] for s in unseen]
    return {'held-out validation D-EER': ' / '.join(f'{v:.2f}' for v in vals), **row,
            'unseen mean D-EER': np.mean(de), 'unseen worst D-EER': max(de), 'minutes': minutes}

def over_seeds(rows:dict, arms, seeds) -> pd.DataFrame:
    "Per arm, each D-EER's mean over `seeds` and its range (min-max)."
    out = {}
    for arm in arms:
        runs = pd.DataFrame([rows[column(arm, s)] for s in seeds])
        out[f'({arm}) {ARMS[arm][0]}'] = {c: f'{runs[c].mean():.2f} ({runs[c].min():.2f}-{runs[c].max():.2f})'
                                          for c in runs.columns if 'D-EER' in c and c != 'held-out validation D-EER'}
    return pd.DataFrame(out)

def report_of(scores) -> pd.DataFrame: return style_report(scores).table.set_index('style')

def seed_ensemble(arm, scored:dict, rows:dict, seeds) -> dict:
    "`arm`'s line for its detectors of every seed in `seeds` fused (`fuse_scores`); no validation of its own."
    row = arm_row(arm, report_of(fuse_scores([scored[arm, s] for s in seeds])), [],
                  sum(rows[column(arm, s)]['minutes'] for s in seeds))
    return {k: v for k, v in row.items() if k != 'held-out validation D-EER'}

def as_table(rows:dict) -> str:
    "Rows of `arm_row` as one printed table, columns by run, numbers to two decimals."
    return pd.DataFrame(rows).map(lambda v: f'{v:.2f}' if isinstance(v, float) else v).to_string()

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n-subjects', type=int, default=1200); p.add_argument('--img-size', type=int, default=112)
    p.add_argument('--pretrain', type=int, default=50); p.add_argument('--steps', type=int, default=2000)
    p.add_argument('--arms', default='abcd'); p.add_argument('--out', default=None)
    p.add_argument('--seeds', type=int, nargs='+', default=[0], help="the arms' fine-tuning seeds")
    p.add_argument('--encoder', default=None, help="an earlier run's pretrain/best.pth: no pretraining")
    p.add_argument('overrides', nargs='*', help='MAEConfig key=value overrides')
    a = p.parse_intermixed_args()
    warnings.filterwarnings('ignore')
    out, t0 = Path(a.out or tempfile.mkdtemp()), time.time()
    table = scan_mad(make_dataset(out/'data', n_subjects=a.n_subjects, img_size=a.img_size, seed=0, progress=False))
    print(f"data: {len(table)} images, {a.n_subjects} subjects at {a.img_size} px, in {time.time() - t0:.0f} s", flush=True)
    cfg = MAEConfig.tiny(img_size=a.img_size, seed=0, train_dataset='LMA',
                         test_datasets=list(SYNTH_STYLES)).override([*DEFAULTS, *a.overrides])
    t = time.time()
    if a.encoder: encoder = load_encoder(a.encoder, cfg)
    else:
        bona = table[(table['label'] == 0) & (table['split'] == 'P2')]
        pre = mae_learner(mae_dls(bona, cfg), cfg, path=out/'pretrain', snapshots=False)
        with pre.no_bar(), pre.no_logging(): pre.fit_one_cycle(a.pretrain)
        encoder = pre.model
        print(f"pretraining on {len(bona)} P2 bona fide images: {a.pretrain} epochs in {time.time() - t:.0f} s",
              flush=True)
    train, tests = protocol_tables(table, 'LMA', cfg)
    rows, scored = {}, {}
    for seed in a.seeds:
        for arm in a.arms:
            t = time.time()
            scored[arm, seed], vals = run_arm(arm, table, train, tests, replace(cfg, seed=seed), encoder, a.steps, out)
            rows[column(arm, seed)] = arm_row(arm, report_of(scored[arm, seed]), vals, (time.time() - t)/60)
    print(f"\nTested on P1 of every style; rates in %; overrides {[*DEFAULTS, *a.overrides]}")
    print(as_table(rows))
    if len(a.seeds) > 1:
        print(f"\nmean (range) over seeds {a.seeds}:\n{over_seeds(rows, a.arms, a.seeds).to_string()}")
        ens = {f'({arm}) {ARMS[arm][0]}': seed_ensemble(arm, scored, rows, a.seeds) for arm in a.arms}
        print(f"\nseed ensembles (each image's score averaged over seeds {a.seeds}):\n{as_table(ens)}")
    au = shortcut_audit(*audit_pairs(table, cfg))
    print("\nshortcut audit (AUC pseudo-morph vs bona fide, 400 training pairs; within 0.35-0.65 passes): "
          + ', '.join(f"{k} {v:.3f}" for k, v in au.items()))
    print(f"total wall time {(time.time() - t0)/60:.1f} min")

if __name__ == '__main__': main()
