"""Each detector loss against its formula written out in torch ops (values and gradients, every logit shape),
bad inputs, and a fastai Learner round trip. Labels: bona fide = 0, morph = 1; score = P(morph)."""
import pickle
import pytest, torch
from torch import nn
from ssl_mae.config import MAEConfig
from ssl_mae.losses import MarginLoss, WeightedBCE, WeightedCE, mad_loss, masked_patch_mse
import ssl_mae.model

CW = [1.37, 0.79]
SHAPES = ['B', 'B1', 'B2']

def make(shape, n=12, seed=0):
    "Random float64 logits of `shape` ('B', 'B1' or 'B2') needing grad, labels with both classes."
    g = torch.Generator().manual_seed(seed)
    size = {'B': (n,), 'B1': (n, 1), 'B2': (n, 2)}[shape]
    z = (torch.randn(size, generator=g, dtype=torch.float64) * 2).requires_grad_()
    y = torch.arange(n) % 3 == 0   # 1/3 morphs
    return z, y.long()

def diff(z):
    "z1 - z0 written out: the logit itself for one-logit heads."
    return z[:, 1] - z[:, 0] if z.ndim == 2 and z.shape[1] == 2 else z.reshape(-1)

def bce_formula(z, y, w):
    d, y, p = diff(z), y.double(), w[1] / w[0]
    return (-(p * y * torch.log(torch.sigmoid(d)) + (1 - y) * torch.log(1 - torch.sigmoid(d)))).mean()

def ce_formula(z, y, w):
    two = z if z.ndim == 2 and z.shape[1] == 2 else torch.stack([torch.zeros_like(diff(z)), diff(z)], 1)
    p = torch.exp(two) / torch.exp(two).sum(1, keepdim=True)
    wy = torch.tensor(w, dtype=torch.float64)[y]
    return (wy * -torch.log(p[torch.arange(len(y)), y])).sum() / wy.sum()

def margin_formula(z, y, w, m=0.3):
    wy = torch.tensor(w, dtype=torch.float64)[y]
    return (wy * torch.clamp(m - (2 * y.double() - 1) * diff(z), min=0)).sum() / wy.sum()

def check(loss, formula, z, y):
    "Values and gradients of `loss` and `formula` agree."
    a, b = loss(z, y), formula(z, y)
    (ga,), (gb,) = torch.autograd.grad(a, z), torch.autograd.grad(b, z)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)
    assert ga.abs().sum() > 0

@pytest.mark.parametrize('shape', SHAPES)
def test_weighted_bce(shape):
    z, y = make(shape)
    check(WeightedBCE(CW), lambda z, y: bce_formula(z, y, CW), z, y)
    check(WeightedBCE(), lambda z, y: bce_formula(z, y, [1, 1]), z, y)

@pytest.mark.parametrize('shape', SHAPES)
def test_weighted_bce_is_balanced_weighting_over_w_bonafide(shape):
    z, y = make(shape)
    d, wy = diff(z), torch.tensor(CW, dtype=torch.float64)[y]
    per_image = -(y * torch.nn.functional.logsigmoid(d) + (1 - y) * torch.nn.functional.logsigmoid(-d))
    check(WeightedBCE(CW), lambda z, y: (wy * per_image).mean() / CW[0], z, y)

@pytest.mark.parametrize('shape', SHAPES)
def test_weighted_ce(shape):
    z, y = make(shape)
    check(WeightedCE(CW), lambda z, y: ce_formula(z, y, CW), z, y)

@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('cw', [None, CW])
def test_margin(shape, cw):
    z, y = make(shape)
    check(MarginLoss(0.3, cw), lambda z, y: margin_formula(z, y, cw or [1, 1]), z, y)
    check(MarginLoss(1.5, cw), lambda z, y: margin_formula(z, y, cw or [1, 1], 1.5), z, y)

def test_margin_examples():
    "max(0, m - y·(z1 - z0)) at hand-computed points, y in {-1, 1}."
    ml = MarginLoss(0.3)
    assert ml(torch.tensor([[0.0, 1.0]]), torch.tensor([1])) == 0            # morph, d = 1 >= m
    torch.testing.assert_close(ml(torch.tensor([[0.0, 0.1]]), torch.tensor([1])), torch.tensor(0.2))
    torch.testing.assert_close(ml(torch.tensor([0.1]), torch.tensor([0])), torch.tensor(0.4))  # bona fide, d = 0.1

@pytest.mark.parametrize('cls', [WeightedBCE, WeightedCE, lambda cw: MarginLoss(0.3, cw)])
@pytest.mark.parametrize('shape', SHAPES)
def test_reductions_and_label_forms(cls, shape):
    z, y = make(shape)
    loss = cls(CW)
    mean = loss(z, y)
    for labels in (y.float(), y[:, None], y.bool(), y.tolist()): torch.testing.assert_close(loss(z, labels), mean)
    loss.reduction = 'none'
    per = loss(z, y)
    assert per.shape == (len(y),)
    loss.reduction = 'sum'
    torch.testing.assert_close(loss(z, y), per.sum())

def test_ce_two_logits_equals_bce_on_difference():
    "Two-class CE is BCE on z1 - z0 (weights aside): CE and BCE agree for unweighted losses."
    z, y = make('B2')
    torch.testing.assert_close(WeightedCE()(z, y), WeightedBCE()(z, y))

def test_extreme_logits_are_finite():
    z, y = torch.tensor([[-200.0, 200.0], [300.0, -300.0]], requires_grad=True), torch.tensor([0, 1])
    for loss in (WeightedBCE(CW), WeightedCE(CW), MarginLoss()):
        (g,) = torch.autograd.grad(loss(z, y), z)
        assert loss(z, y).isfinite() and g.isfinite().all()

def test_masked_patch_mse_is_the_models():
    "The losses module re-exports the model's masked-patch MSE (not a copy), which averages over masked patches."
    assert masked_patch_mse is ssl_mae.model.masked_patch_mse
    pred = torch.randn(2, 4, 6, requires_grad=True)
    target, mask = torch.randn(2, 4, 6), torch.tensor([[1., 0., 1., 0.], [0., 1., 1., 1.]])
    want = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    torch.testing.assert_close(masked_patch_mse(pred, target, mask), want)

@pytest.mark.parametrize('name,cls', [('bce', WeightedBCE), ('ce', WeightedCE), ('margin', MarginLoss)])
def test_mad_loss_picks_by_config(name, cls):
    loss = mad_loss(MAEConfig.tiny(loss=name, margin=0.4, seed=0), [2.73, 0.61])
    assert type(loss) is cls and torch.equal(loss.weights, torch.tensor([2.73, 0.61]))
    if name == 'margin': assert loss.m == 0.4
    assert type(mad_loss(MAEConfig.tiny(loss=name, class_weights=[1, 2], seed=0))) is cls

@pytest.mark.parametrize('bad,msg', [
    (lambda: WeightedBCE([1.0]), 'class_weights=[1.0]: must be two positive numbers'),
    (lambda: WeightedCE([1.0, -1.0]), 'must be two positive numbers'),
    (lambda: WeightedBCE([1.0, 0.0]), 'must be two positive numbers'),
    (lambda: MarginLoss(0.3, [float('nan'), 1.0]), 'must be two positive numbers'),
    (lambda: WeightedBCE('balanced'), "class_weights='balanced'"),
    (lambda: MarginLoss(-0.1), 'margin m=-0.1'),
    (lambda: WeightedBCE()(torch.zeros(4, 3), torch.zeros(4)),
     'logits must have shape (B,), (B,1) or (B,2); got (4, 3)'),
    (lambda: WeightedCE()(torch.zeros(4, 2, 1), torch.zeros(4)), 'got (4, 2, 1)'),
    (lambda: MarginLoss()(torch.zeros(2, 2), torch.zeros(4)), '4 labels for 2 logits'),
    (lambda: WeightedBCE()(torch.zeros(2), torch.tensor([-1, 1])),
     'labels must be 0 (bona fide) or 1 (morph); got values [-1, 1]'),
    (lambda: WeightedCE()(torch.zeros(2, 2), torch.tensor([1, 2])), 'got values [1, 2]'),
    (lambda: mad_loss(MAEConfig.tiny(seed=0)), 'mad_loss needs class weights'),
])
def test_bad_input(bad, msg):
    with pytest.raises(ValueError) as e: bad()
    assert msg in str(e.value)

def test_unknown_loss_name():
    cfg = MAEConfig.tiny(seed=0)
    cfg.loss = 'focal'
    with pytest.raises(ValueError, match="cfg.loss='focal': must be one of bce, ce, margin"): mad_loss(cfg, CW)

def test_pickles():
    for loss in (WeightedBCE(CW), WeightedCE(CW), MarginLoss(0.3, CW)):
        z, y = make('B1')
        torch.testing.assert_close(pickle.loads(pickle.dumps(loss))(z, y), loss(z, y))

@pytest.mark.parametrize('name', ['bce', 'ce', 'margin'])
def test_fastai_learner_round_trip(name):
    "Train a linear detector briefly; get_preds gives P(morph) scores, 0/1 calls and per-image losses."
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from torch.utils.data import TensorDataset
    from fastai.data.load import DataLoader
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()          # morphs are the images with a positive first feature
    ds = TensorDataset(x, y)
    dls = DataLoaders(DataLoader(ds, bs=16, shuffle=True), DataLoader(ds, bs=16))
    cfg = MAEConfig.tiny(loss=name, seed=0)
    loss = mad_loss(cfg, [1.0, 2.0])
    learn = Learner(dls, nn.Linear(4, 2 if name == 'ce' else 1), loss_func=loss, lr=0.5)
    learn.fit(5)
    scores, targs, calls, losses = learn.get_preds(with_decoded=True, with_loss=True)
    assert scores.shape == (64,) and ((scores >= 0) & (scores <= 1)).all()
    assert torch.equal(calls, (scores >= 0.5).long())
    assert losses.shape == (64,) and (losses >= 0).all()
    assert (calls == targs).float().mean() > 0.8
    assert learn.loss_func.reduction == 'mean'

def test_fastai_tensor_types():
    "fastai's TensorBase logits and TensorCategory labels give plain tensors and the same values."
    from fastai.torch_core import TensorBase, TensorCategory
    z, y = make('B2')
    z = z.detach().float()   # fastai's TensorBase makes float64 float32
    for loss in (WeightedBCE(CW), WeightedCE(CW), MarginLoss(0.3, CW)):
        out = loss(TensorBase(z), TensorCategory(y))
        assert type(out) is torch.Tensor
        torch.testing.assert_close(out, loss(z, y))
