"""Self-supervised Masked Autoencoders for face Morphing Attack Detection, as fastai callbacks

Modules:

- `ssl_mae.metrics`: ISO/IEC 30107-3 metrics for morphing attack detection: D-EER, BPCER@APCER, APCER@BPCER and AUC from torchmetrics' ROC, per-style and cross-style reports, and fastai metrics over the whole validation set.
- `ssl_mae.viz`: DET (probit) and ROC curves, score histograms, reconstruction grids, error maps and training curves: each a matplotlib Figure, written as PNG on request."""

__version__ = "0.0.1"
