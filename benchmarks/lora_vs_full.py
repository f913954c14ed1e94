"""LoRA against full fine-tuning of the tiny detector, side by side from the same pretrained encoder.

Generates a synthetic set with every synthetic style (LMA, LMA_UBO, MorDiff), pretrains the tiny MAE on the LMA P2
images (never on test images), then fine-tunes detectors on LMA P2 from that one encoder with the same config,
seed, data and epochs, differing only in how they adapt: every weight (`adapter=full`), LoRA adapters on q and v
of a frozen encoder (`adapter=lora`), and, as a reference, the head alone on the frozen encoder
(`freeze_strategy=backbone_only`, MADation's linear probe). Prints, per arm, the in-style D-EER (LMA P1), the
cross-style D-EER (LMA_UBO and MorDiff P1) and their mean, the trainable parameters (those that received a gradient)
and seconds per fine-tuning epoch. CPU, fp32. The defaults took 7.8 and 5.6 minutes on 2 shared cores (data 1 min,
pretraining 2-3 min, each arm 1-2 min); keep them within about 10 minutes. Data, pretraining and every arm are
seeded: two runs give the same D-EERs. Results and lab notes: benchmarks/README.md.

    python benchmarks/lora_vs_full.py [--n-subjects 300] [--img-size 64] [--pretrain 30] [--finetune 12] \
        [--arms full,lora,frozen] [--lora-lr LR] [key=value ...]   (MAEConfig overrides on the tiny preset)
"""
import argparse, tempfile, time, warnings
from pathlib import Path
from ssl_mae.config import MAEConfig
from ssl_mae.synth import make_dataset, SYNTH_STYLES
from ssl_mae.data import scan_mad, mae_dls, mad_dls, protocol_tables
from ssl_mae.learner import mae_learner, mad_learner, evaluate

ARMS = dict(full=['adapter=full'], lora=['adapter=lora'], frozen=['adapter=full', 'freeze_strategy=backbone_only'])

def finetune(name, cfg, train, tests, encoder, epochs, out):
    "Fine-tune one arm; return (per-style report rows, trainable parameters, seconds per epoch)."
    det = mad_learner(mad_dls(train, cfg=cfg), cfg, encoder=encoder, path=out/name)
    t = time.time()
    with det.no_bar(), det.no_logging(): det.fit_one_cycle(epochs)
    per_epoch = (time.time() - t) / epochs
    trained = sum(p.numel() for p in det.model.parameters() if p.grad is not None)
    with det.no_bar(): _, rep = evaluate(det, tests, train_style='LMA', out=out/f'{name}-eval', plots=False)
    return rep.table.set_index('style'), trained, per_epoch

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n-subjects', type=int, default=300); p.add_argument('--img-size', type=int, default=64)
    p.add_argument('--pretrain', type=int, default=30); p.add_argument('--finetune', type=int, default=12)
    p.add_argument('--arms', default='full,lora,frozen', help=f"comma-separated, from {', '.join(ARMS)}")
    p.add_argument('--lora-lr', type=float, default=None, help="the LoRA arm's learning rate (default: the config's)")
    p.add_argument('--out', default=None)
    p.add_argument('overrides', nargs='*', help='MAEConfig key=value overrides on the tiny preset')
    a = p.parse_intermixed_args()
    warnings.filterwarnings('ignore')
    out, styles = Path(a.out or tempfile.mkdtemp()), list(SYNTH_STYLES)
    t = time.time()
    table = scan_mad(make_dataset(out/'data', n_subjects=a.n_subjects, img_size=a.img_size, seed=0, progress=False))
    print(f"data: {len(table)} images ({', '.join(styles)}) in {time.time() - t:.0f} s", flush=True)
    cfg = MAEConfig.tiny(img_size=a.img_size, seed=0, train_dataset='LMA', test_datasets=styles,
                         recon_weight=0).override(a.overrides)
    t = time.time()
    pre = mae_learner(mae_dls(table[(table['style'] == 'LMA') & (table['split'] == 'P2')], cfg), cfg,
                      path=out/'pretrain', snapshots=False)
    with pre.no_bar(), pre.no_logging(): pre.fit_one_cycle(a.pretrain)
    print(f"pretraining: {a.pretrain} epochs in {time.time() - t:.0f} s, valid loss "
          f"{pre.recorder.values[0][1]:.4f} -> {pre.recorder.values[-1][1]:.4f}", flush=True)
    train, tests = protocol_tables(table, 'LMA', cfg)
    rows = {}
    for name in a.arms.split(','):
        arm = cfg.override(ARMS[name] + ([f'learning_rate={a.lora_lr}'] if name == 'lora' and a.lora_lr else []))
        rows[name] = finetune(name, arm, train, tests, pre.model, a.finetune, out)
        print(f"{name}: fine-tuned {a.finetune} epochs, {rows[name][2]:.1f} s/epoch", flush=True)
    cross = [s for s in styles if s != 'LMA']
    print(f"\nD-EER % (AUC), trained on LMA P2, {a.n_subjects} subjects at {a.img_size} px, {a.pretrain} pretraining and "
          f"{a.finetune} fine-tuning epochs, lr {cfg.learning_rate:g} (LoRA {a.lora_lr or cfg.learning_rate:g}), "
          f"overrides {a.overrides}:")
    print(f"{'arm':8}" + ''.join(f"{s:>16}" for s in styles) + f"{'cross mean':>12}{'trained params':>16}{'s/epoch':>9}")
    for name, (rep, trained, per_epoch) in rows.items():
        cells = ''.join(f"{100 * rep.loc[s, 'd_eer']:9.2f} ({rep.loc[s, 'auc']:.3f})" for s in styles)
        mean = 100 * rep.loc[cross, 'd_eer'].mean()
        print(f"{name:8}{cells}{mean:12.2f}{trained:16,}{per_epoch:9.1f}")
    if {'full', 'lora'} <= set(rows):
        (f, nf, tf), (l, nl, tl) = rows['full'], rows['lora']
        print(f"lora / full: cross-style mean D-EER {l.loc[cross, 'd_eer'].mean() / f.loc[cross, 'd_eer'].mean():.2f}, "
              f"in-style D-EER {l.loc['LMA', 'd_eer'] / max(f.loc['LMA', 'd_eer'], 1e-9):.2f}, "
              f"trained parameters {nl / nf:.4f}, seconds per epoch {tl / tf:.2f}")

if __name__ == '__main__': main()
