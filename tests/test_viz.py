"""Every plot renders a Figure with the expected axes and lines and writes a PNG; the DET curve sits on probit axes
at the metrics module's points; reconstructions de-normalise norm_pix predictions; training curves read a real
fastai Recorder and CSVLogger file."""
import numpy as np, pandas as pd, pytest, torch
from matplotlib.figure import Figure
from scipy.stats import norm
from ssl_mae.config import MAEConfig
from ssl_mae.metrics import det_points, mad_metrics
from ssl_mae.model import MaskedAutoencoder, masked_patch_mse, patch_mean_var
from ssl_mae.viz import (DET_TICKS, plot_det, plot_error_map, plot_roc, plot_score_hist, plot_training_curves,
                         reconstruct, score_sets, show_reconstructions)

def table(styles=('LMA', 'MIPGAN_I', 'MorDiff', 'StyleGAN_IWBF'), n=80, seed=0):
    rng = np.random.default_rng(seed)
    parts = []
    for k, st in enumerate(styles):
        y = (np.arange(n) % 3 != 0).astype(int)
        parts.append(pd.DataFrame(dict(style=st, label=y, score=rng.random(n) * 0.6 + 0.4 * y / (k + 1))))
    return pd.concat(parts, ignore_index=True)

def is_png(p): return p.is_file() and p.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

@pytest.mark.parametrize('plot,n_axes,n_lines', [(plot_det, 1, 2 * 4 + 1), (plot_roc, 1, 4 + 1)])
def test_curve_plots(plot, n_axes, n_lines, tmp_path):
    fig = plot(table(), save=tmp_path/'sub'/'curve.png')
    assert isinstance(fig, Figure) and len(fig.axes) == n_axes
    assert len(fig.axes[0].get_lines()) == n_lines
    assert len(fig.axes[0].get_legend().get_texts()) == 4
    assert is_png(tmp_path/'sub'/'curve.png')

def test_det_is_probit_of_metrics_points():
    tab = table(styles=('LMA',))
    fig = plot_det(tab, lim=(1e-3, 0.9))
    ax = fig.axes[0]
    curve, marker = ax.get_lines()[:2]
    pts = det_points(tab.score, tab.label)
    np.testing.assert_allclose(curve.get_xdata(), norm.ppf(np.clip(pts.apcer, 1e-3, 0.9)))
    np.testing.assert_allclose(curve.get_ydata(), norm.ppf(np.clip(pts.bpcer, 1e-3, 0.9)))
    eer = mad_metrics(tab.score, tab.label)['d_eer']
    np.testing.assert_allclose(marker.get_xydata()[0], norm.ppf([eer, eer]))
    np.testing.assert_allclose(ax.get_xticks(), norm.ppf(DET_TICKS))
    np.testing.assert_allclose(ax.get_yticks(), norm.ppf(DET_TICKS))
    assert [t.get_text() for t in ax.get_yticklabels()] == ['0.1', '1', '5', '10', '20', '40']
    assert ax.get_xscale() == 'linear' and ax.get_yscale() == 'linear'   # probit by transform, not log-log
    assert f'{100 * eer:.1f} %' in ax.get_legend().get_texts()[0].get_text()

def test_perfect_detector_stays_on_the_chart():
    "Rates of 0 are clipped to the axis edge, not sent to -inf."
    fig = plot_det({'perfect': ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])})
    assert np.isfinite(fig.axes[0].get_lines()[0].get_xydata()).all()

def test_roc_auc_matches_metrics():
    tab = table(styles=('LMA',))
    text = plot_roc(tab).axes[0].get_legend().get_texts()[0].get_text()
    assert f"AUC {mad_metrics(tab.score, tab.label)['auc']:.3f}" in text

def test_score_hist(tmp_path):
    tab = table()
    fig = plot_score_hist(tab, bins=20, save=tmp_path/'hist.png')
    assert len(fig.axes) == 4 and is_png(tmp_path/'hist.png')
    for ax, (st, g) in zip(fig.axes, tab.groupby('style', sort=False)):
        assert ax.get_title() == st and len(ax.patches) == 40
        (vline,) = ax.get_lines()
        assert vline.get_xdata()[0] == pytest.approx(mad_metrics(g.score, g.label)['d_eer_threshold'])
        assert sum(p.get_height() for p in ax.patches) == len(g)

def test_score_set_inputs_and_errors():
    s, y = [0.2, 0.7, 0.4, 0.9], [0, 1, 0, 1]
    assert len(plot_roc({'a': (s, y), 'b': (torch.tensor(s), torch.tensor(y))}).axes[0].get_lines()) == 3
    assert len(plot_det(pd.DataFrame(dict(score=s, label=y))).axes[0].get_legend().get_texts()) == 1
    with pytest.raises(ValueError, match='only bona fide'): plot_det({'MorDiff': ([0.1, 0.2], [0, 0])})
    with pytest.raises(ValueError, match='MorDiff'): plot_score_hist({'MorDiff': ([0.1, 0.2], [0, 0])})
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['label'\]"): plot_roc(pd.DataFrame(dict(score=s)))
    with pytest.raises(TypeError, match='got ndarray'): score_sets(np.array(s))

@pytest.fixture(scope='module')
def imgs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 3, 64, 64, generator=g)

class Oracle(MaskedAutoencoder):
    "Predicts every patch exactly, in the units the loss uses (normalised per patch when norm_pix_loss)."
    def forward(self, imgs, mask_ratio=None, noise=None):
        _, pred, mask = super().forward(imgs, mask_ratio=mask_ratio, noise=noise)
        t = self.patchify(imgs)
        if self.norm_pix_loss:
            m, v = patch_mean_var(t)
            t = (t - m) / (v + 1e-6) ** 0.5
        assert masked_patch_mse(t, self.patchify(imgs), mask, self.norm_pix_loss) < 1e-8   # a perfect prediction
        return torch.zeros(()), t, mask

@pytest.mark.parametrize('norm_pix', [False, True])
def test_reconstruct_denormalises(norm_pix, imgs):
    model = Oracle.from_cfg(MAEConfig.tiny(seed=0, norm_pix_loss=norm_pix))
    target, pred, mask = reconstruct(model, imgs, mask_ratio=0.75)
    torch.testing.assert_close(pred, target, atol=1e-4, rtol=1e-4)
    assert mask.shape == target.shape[:2] and model.training

def test_show_reconstructions(imgs, tmp_path):
    model = Oracle.from_cfg(MAEConfig.tiny(seed=0, norm_pix_loss=True)).eval()
    fig = show_reconstructions(model, imgs, n=2, save=tmp_path/'recon.png')
    assert len(fig.axes) == 8 and is_png(tmp_path/'recon.png') and not model.training
    axs = np.array(fig.axes).reshape(2, 4)
    for row in axs:   # a perfect model: reconstruction and pasted reconstruction are the original
        orig = row[0].get_images()[0].get_array()
        for ax in row[2:]: np.testing.assert_allclose(ax.get_images()[0].get_array(), orig, atol=1e-3)
    assert [ax.get_title() for ax in axs[0]] == ['original', 'masked', 'reconstruction', 'reconstruction + visible']

def test_show_reconstructions_fixed_noise(imgs):
    model = MaskedAutoencoder.from_cfg(MAEConfig.tiny(seed=0))
    noise = torch.rand(3, model.patch_embed.num_patches)
    a, b = (show_reconstructions(model, imgs, noise=noise, n=3).axes[5].get_images()[0].get_array() for _ in range(2))
    np.testing.assert_array_equal(a, b)

@pytest.mark.parametrize('ratio,hidden', [(0.75, 48), (0.0, 64)])
def test_error_map(ratio, hidden, imgs, tmp_path):
    model = MaskedAutoencoder.from_cfg(MAEConfig.tiny(seed=0))
    fig = plot_error_map(model, imgs, mask_ratio=ratio, save=tmp_path/'err.png')
    assert len(fig.axes) == 2 * 3 + 1 and is_png(tmp_path/'err.png')
    heat = fig.axes[3].get_images()[1].get_array()
    assert heat.shape == model.patch_embed.grid_size and (~np.ma.getmaskarray(np.ma.masked_invalid(heat))).sum() == hidden

def _learner(tmp_path, append):
    from fastai.callback.progress import CSVLogger
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    from ssl_mae.losses import WeightedBCE
    from ssl_mae.metrics import AUC, DEER
    from torch.utils.data import TensorDataset
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    ds = TensorDataset(x, (x[:, 0] > 0).long())
    dls = DataLoaders(DataLoader(ds, bs=16, shuffle=True), DataLoader(ds, bs=32))
    return Learner(dls, torch.nn.Linear(4, 1), loss_func=WeightedBCE(), metrics=[DEER(), AUC()],
                   cbs=CSVLogger(tmp_path/'history.csv', append=append), lr=0.1)

def test_training_curves_from_recorder_and_csv(tmp_path):
    learn = _learner(tmp_path, append=True)
    with learn.no_bar(), learn.no_logging():
        learn.fit(2)
        learn.fit(2)   # a second fit: its header is appended to the CSV again
    fig = plot_training_curves(learn.recorder, save=tmp_path/'curves.png')
    assert len(fig.axes) == 2 and is_png(tmp_path/'curves.png')
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2]
    assert len(fig.axes[0].get_lines()[0].get_xdata()) == 2   # the recorder keeps the last fit
    fig = plot_training_curves(tmp_path/'history.csv')
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2]
    assert len(fig.axes[1].get_lines()[0].get_xdata()) == 4   # the CSV keeps both fits
    assert {l.get_label() for l in fig.axes[1].get_lines()} == {'d_eer', 'auc'}

def test_training_curves_losses_only_and_errors(tmp_path):
    (tmp_path/'log.csv').write_text('epoch,train_loss,valid_loss,time\n0,1.0,1.1,00:01\n1,0.5,0.7,00:01\n')
    assert len(plot_training_curves(str(tmp_path/'log.csv')).axes) == 1
    (tmp_path/'empty.csv').write_text('epoch,train_loss,time\n')
    with pytest.raises(ValueError, match='no epochs'): plot_training_curves(tmp_path/'empty.csv')
    with pytest.raises(FileNotFoundError, match='missing.csv not found'): plot_training_curves(tmp_path/'missing.csv')
    with pytest.raises(TypeError, match='Recorder or a CSVLogger'): plot_training_curves({'loss': [1, 2]})
