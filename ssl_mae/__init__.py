"""Self-supervised Masked Autoencoders for face Morphing Attack Detection, as fastai callbacks

The package's layers, bottom up: each module imports only modules above it in this list (`tests/test_layering.py`
checks it).

1. `config` (imports no module of the package), `io` (no torch, no fastai)
2. `landmarks`, `synth`, `faces` (no torch), then `align` (no torch)
3. `data`, `pseudo_ops`
4. `model`, `checkpoints`, `detector`, `lora`, `losses`, `metrics`, `viz`
5. `callbacks`, `runs`, `learner`, `pseudo`, `distributed`
6. `cli` (imports the training modules only inside its commands, so `ssl_mae --help` answers fast)

Modules:

- `ssl_mae.align`: Aligned copies of every photo of a data set, resumable, with their landmarks and a report of every photo skipped; and the aligned inputs a trained detector needs.
- `ssl_mae.callbacks`: The MAE pretext task, reconstruction snapshots, token weight decay, joint training and freezing as small fastai callbacks.
- `ssl_mae.checkpoints`: MAE weights into a `MaskedAutoencoder`: HF folders, facebookresearch/mae and timm files, ssl_mae's encoder files.
- `ssl_mae.cli`: `ssl_mae synth | align | pretrain | finetune | evaluate | predict | demo | config`: each subcommand is a thin layer over the library functions a notebook user calls, with one config story (`--preset`, `--config file.json`, `key=value` overrides), one run folder per run, one-line errors and a prompt `--help`.
- `ssl_mae.config`: `MAEConfig`: every knob of a run in one validated object, with presets, JSON and `key=value` overrides; the alignment settings of face crops.
- `ssl_mae.data`: Scan a MAD data folder or manifest into one table (`path, label, style, split, subject`), split it by subject, weigh its classes, and serve it as fastai `DataLoaders`.
- `ssl_mae.detector`: The morph detector on an MAE encoder: scores from logits, the heads, `MADClassifier` and its parameter groups.
- `ssl_mae.distributed`: Data-parallel training on several GPUs or several CPU processes: fastai's `distrib_ctx`, with loaders that also run under gloo on CPUs.
- `ssl_mae.faces`: Find faces and their 68 landmarks in real photos, align them to one template and crop them, the same way everywhere.
- `ssl_mae.io`: General helpers every other module uses: files written whole, progress only where someone watches, images read as RGB with one clear error, image folders listed safely, output folders claimed safely. No torch, no fastai.
- `ssl_mae.landmarks`: The 68 iBUG face landmarks: their named groups, and the `landmarks.csv` file every data set carries.
- `ssl_mae.learner`: `mae_learner` pretrains, `mad_learner` fine-tunes a detector, both as runs that resume through fastai's `start_epoch`; `evaluate` and `predict` score images.
- `ssl_mae.lora`: LoRA adapters (peft) on a frozen pretrained encoder: the detector's `adapter='lora'`, its parameter groups, and merging the adapters into the weights for export.
- `ssl_mae.losses`: The detector's losses (weighted BCE, weighted CE, margin), chosen from the config, and the masked reconstruction loss that joint training adds.
- `ssl_mae.metrics`: ISO/IEC 30107-3 metrics for morphing attack detection: D-EER, BPCER@APCER, APCER@BPCER and AUC from torchmetrics' ROC, per-style and cross-style reports, fastai metrics over the whole validation set, and the shortcut audit of trivial cues.
- `ssl_mae.model`: The masked autoencoder in facebookresearch/mae's shape, on timm blocks.
- `ssl_mae.pseudo`: Bona-fide-only training: the images a detector trains on, loaders that carry their landmarks, and a callback that pairs every batch with its pseudo-morphs, so a detector learns morphing without any morph data.
- `ssl_mae.pseudo_ops`: Self-blended and self-morphed pseudo-morphs made from bona fide images and their landmarks: batched tensor operations on any device, every random number from a seeded stream of each image.
- `ssl_mae.runs`: One home for a training run: its folder, config, log, checkpoints and state, resuming through fastai's own `start_epoch`, Ctrl-C, one writer at a time, and console output that suits a notebook, a terminal or a log file.
- `ssl_mae.synth`: Procedural faces with exact landmarks, three morph styles and a MAD folder set, so no demo needs restricted data.
- `ssl_mae.viz`: DET (probit) and ROC curves, score histograms, reconstruction grids, error maps, training curves and rows of images: each a matplotlib Figure, written as PNG on request."""

__version__ = "0.0.1"

import warnings
# fastai's layers module (imported by data, metrics, viz and the training modules) decorates a function with
# torch.jit.script, which torch >= 2.9 deprecates with a FutureWarning on every import; it says nothing to our users.
warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)
