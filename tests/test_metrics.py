"""ssl_mae.metrics against values derived directly from `sklearn.metrics.roc_curve`, on random, tied and heavily
imbalanced score sets; invariances, limits, every error message, reports and the fastai metrics."""
import numpy as np, pandas as pd, pytest, torch
from sklearn.metrics import roc_auc_score, roc_curve
from ssl_mae.metrics import AUC, BPCERAtAPCER, DEER, apcer_bpcer, det_points, mad_metrics, style_report
from ssl_mae.detector import morph_score

XS = (0.01, 0.05, 0.1, 0.2)

def sk_metrics(s, y):
    "The metrics derived straight from sklearn's ROC (drop_intermediate=False), same definitions."
    s, y = np.asarray(s, float), np.asarray(y)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    n_m = (y == 1).sum()
    apcer, bpcer = np.rint((1 - tpr) * n_m) / n_m, fpr  # APCER back to an exact count / n_morph
    d = apcer - bpcer
    j = np.flatnonzero(d <= 0)[0]
    w = d[j-1] / (d[j-1] - d[j])
    t0 = thr[j] if j == 1 else thr[j-1]
    out = dict(auc=roc_auc_score(y, s), d_eer=apcer[j-1] + w * (apcer[j] - apcer[j-1]),
               d_eer_threshold=t0 + w * (thr[j] - t0))
    out |= {f'bpcer_at_apcer_{round(100*x)}': bpcer[apcer <= x].min() for x in XS}
    out |= {f'apcer_at_bpcer_{round(100*x)}': apcer[bpcer <= x].min() for x in XS}
    return out | dict(n_bonafide=int((y == 0).sum()), n_morph=int(n_m))

def brute(s, y, x):
    "BPCER@APCER<=x by trying every threshold with `apcer_bpcer` (no ROC at all)."
    rates = [apcer_bpcer(s, y, t) for t in [np.inf, *np.unique(s)]]
    return min(b for a, b in rates if a <= x)

rng = np.random.default_rng(0)
def normal_set(n_b, n_m, shift=1.5, decimals=None):
    s = np.r_[rng.normal(0, 1, n_b), rng.normal(shift, 1, n_m)]
    return (s if decimals is None else s.round(decimals)), np.r_[np.zeros(n_b, int), np.ones(n_m, int)]

SETS = {'random': normal_set(700, 1300), 'tied': normal_set(300, 500, decimals=1),
        'few distinct': normal_set(100, 100, decimals=0), 'imbalanced 1:50': normal_set(40, 2000),
        'imbalanced 50:1': normal_set(2000, 40, decimals=2), 'logits': normal_set(500, 500, shift=40)}
SETS['logits'][0][:] *= 30  # far outside [0, 1]: torchmetrics would apply a sigmoid

@pytest.mark.parametrize('key', SETS)
def test_equals_sklearn(key):
    s, y = SETS[key]
    m, ref = mad_metrics(s, y), sk_metrics(s, y)
    assert list(m) == list(ref)
    for k in m: assert m[k] == pytest.approx(ref[k], abs=1e-6), k

@pytest.mark.parametrize('key', ['tied', 'few distinct'])
def test_operating_points_by_brute_force(key):
    s, y = SETS[key]
    m = mad_metrics(s, y)
    for x in XS: assert m[f'bpcer_at_apcer_{round(100*x)}'] == brute(s, y, x)

def test_exact_boundary_is_admissible():
    "APCER exactly 5/100 counts as <= 5 % (rates are exact counts, not 1 - tpr in float32)."
    s = np.r_[np.linspace(0, 1, 100), np.linspace(0.5, 2, 100)]
    y = np.r_[np.zeros(100, int), np.ones(100, int)]
    assert mad_metrics(s, y)['bpcer_at_apcer_5'] == brute(s, y, 0.05)

def test_tie_reordering_invariance():
    s, y = SETS['few distinct']
    m = mad_metrics(s, y)
    for seed in range(5):
        p = np.random.default_rng(seed).permutation(len(s))
        assert mad_metrics(s[p], y[p]) == m
        assert det_points(s[p], y[p]).equals(det_points(s, y))

def test_input_types_agree():
    s, y = SETS['tied']
    m = mad_metrics(s, y)
    for ss, yy in [(torch.tensor(s), torch.tensor(y)), (list(s), list(y)), (pd.Series(s), pd.Series(y.astype(bool))),
                   (torch.tensor(s)[:, None], torch.tensor(y, dtype=torch.float))]:
        assert mad_metrics(ss, yy) == m

def test_any_real_scores_rank_exactly():
    "Logits whose sigmoids are equal in float64 (torchmetrics would apply one) stay distinct thresholds."
    s, y = np.array([-60., -40, 40, 60]), np.array([0, 1, 0, 1])
    assert 1 / (1 + np.exp(-40.)) == 1 / (1 + np.exp(-60.))
    assert det_points(s, y).threshold.tolist() == [np.inf, 60, 40, -40, -60]
    assert mad_metrics(s, y) == pytest.approx(sk_metrics(s, y))

def test_perfect_separation():
    s, y = np.r_[rng.random(50), 2 + rng.random(70)], np.r_[np.zeros(50), np.ones(70)]
    m = mad_metrics(s, y)
    assert m['d_eer'] == 0 and m['auc'] == 1 and m['d_eer_threshold'] == s[50:].min()
    assert all(m[f'{a}_at_{b}_{round(100*x)}'] == 0 for a, b in [('bpcer', 'apcer'), ('apcer', 'bpcer')] for x in XS)
    assert apcer_bpcer(s, y, m['d_eer_threshold']) == (0, 0)

def test_identical_distributions_give_chance():
    s, y = normal_set(20000, 20000, shift=0)
    m = mad_metrics(s, y)
    assert m['d_eer'] == pytest.approx(0.5, abs=0.01) and m['auc'] == pytest.approx(0.5, abs=0.01)
    assert mad_metrics(np.full(10, 0.3), np.arange(10) % 2)['d_eer'] == 0.5

def test_d_eer_threshold_brackets():
    s, y = SETS['random']
    m = mad_metrics(s, y)
    a, b = apcer_bpcer(s, y, m['d_eer_threshold'])
    assert b <= m['d_eer'] <= a

@pytest.mark.parametrize('call, msg', [
    (lambda: mad_metrics([0.1, 0.2], [0, 1, 1]), 'differ in length: 2 scores, 3 labels'),
    (lambda: mad_metrics([np.nan, np.nan, 0.3], [0, 1, 1], 'LMA'), '2 NaN and 0 infinite scores in LMA (of 3)'),
    (lambda: mad_metrics(torch.tensor([0.1, float('inf'), -float('inf')]), [0, 1, 1]), '0 NaN and 2 infinite'),
    (lambda: mad_metrics([0.1, 0.2], [1, 1], 'MIPGAN_I'), 'MIPGAN_I has only morph samples (n=2): D-EER, AUC'),
    (lambda: mad_metrics([0.1, 0.2], [0, 0]), 'the score set has only bona fide samples'),
    (lambda: mad_metrics([], []), 'has no samples'),
    (lambda: mad_metrics([0.1, 0.2], [-1, 1]), 'labels must be 0 (bona fide) or 1 (morph), not [-1]'),
    (lambda: mad_metrics(['a', 'b'], [0, 1]), 'scores must be numbers'),
    (lambda: apcer_bpcer([], [], 0.5, 'LMA'), 'LMA has no samples'),
])
def test_errors(call, msg):
    with pytest.raises((ValueError, TypeError)) as e: call()
    assert msg in str(e.value)

def scores_table(trains=('LMA', 'MorDiff'), styles=('LMA', 'MIPGAN_I', 'MorDiff')):
    parts = []
    for i, tr in enumerate(trains):
        r = np.random.default_rng(i)
        bona = pd.DataFrame(dict(path=[f'bf{k}' for k in range(60)], label=0, score=r.normal(0, 1, 60)))
        for st in styles:
            morph = pd.DataFrame(dict(path=[f'{st}{k}' for k in range(90)], label=1,
                                      score=r.normal(3 if st == tr else 0.5, 1, 90)))
            parts.append(pd.concat([bona, morph]).assign(style=st, train_style=tr))
    return pd.concat(parts, ignore_index=True)

def test_style_report():
    tab = scores_table()
    rep = style_report(tab)
    assert len(rep.table) == 2 * 4 and list(rep.table.columns[:2]) == ['train_style', 'style']
    for tr, g in tab.groupby('train_style'):
        rows = rep.table[rep.table.train_style == tr].set_index('style')
        pooled = g.drop_duplicates('path')
        assert rows.loc['pooled', 'd_eer'] == mad_metrics(pooled.score, pooled.label)['d_eer']
        assert rows.loc['pooled', 'n_bonafide'] == 60 and rows.loc['pooled', 'n_morph'] == 270
        t = rows.loc['pooled', 'd_eer_threshold']
        for st, gs in g.groupby('style'):
            assert rows.loc[st, 'apcer_at_pooled_t'] == apcer_bpcer(gs.score, gs.label, t)[0]
            assert rows.loc[st, 'bpcer_at_pooled_t'] == apcer_bpcer(gs.score, gs.label, t)[1]
            assert rows.loc[st, 'bpcer_at_apcer_10'] == mad_metrics(gs.score, gs.label)['bpcer_at_apcer_10']
        assert rows.loc['pooled', 'worst_case_apcer'] == rows.apcer_at_pooled_t.drop('pooled').max()
    mat = rep.matrix('d_eer')
    assert mat.index.tolist() == ['LMA', 'MorDiff'] and mat.columns.tolist() == ['LMA', 'MIPGAN_I', 'MorDiff', 'pooled']
    assert mat.loc['LMA', 'LMA'] < 0.2 < mat.loc['LMA', 'MorDiff']
    md = rep.markdown()
    assert 'D-EER (%), train style (rows)' in md and 'BPCER at APCER = 10 %' in md and '| MorDiff | MorDiff |' in md

def test_style_report_one_detector():
    rep = style_report(scores_table(trains=('LMA',)).drop(columns=['train_style', 'path']))
    assert 'train_style' not in rep.table and rep.table['style'].tolist() == ['LMA', 'MIPGAN_I', 'MorDiff', 'pooled']
    assert rep.table.set_index('style').loc['pooled', 'n_bonafide'] == 180  # without paths, rows are images
    assert 'train style (rows)' not in rep.markdown()
    with pytest.raises(ValueError, match="needs a 'train_style' column"): rep.matrix()

def test_style_report_errors():
    tab = scores_table()
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['label'\]"): style_report(tab.drop(columns='label'))
    bad = tab[~((tab['style'] == 'MIPGAN_I') & (tab.label == 0))]
    with pytest.raises(ValueError, match=r'MIPGAN_I \(trained on LMA\) has only morph samples'): style_report(bad)
    with pytest.raises(ValueError, match='1 NaN'): style_report(tab.assign(score=tab.score.where(tab.index != 5)))

def fake_learner(n_logits, metrics):
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    from fastai.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat
    torch.manual_seed(n_logits)
    x = torch.randn(60, 5)
    lab = (x[:, 0] + torch.randn(60) > 0).long()
    dls = DataLoaders(*[DataLoader(list(zip(x, lab if n_logits == 2 else lab.float())), bs=7) for _ in range(2)])
    loss = CrossEntropyLossFlat() if n_logits == 2 else BCEWithLogitsLossFlat()
    return Learner(dls, torch.nn.Linear(5, n_logits), loss_func=loss, metrics=metrics), x, lab

@pytest.mark.parametrize('n_logits', [1, 2])
def test_fastai_metrics_whole_validation_set(n_logits, tmp_path):
    learn, x, lab = fake_learner(n_logits, [DEER(), BPCERAtAPCER(0.1), BPCERAtAPCER(0.05), AUC()])
    learn.path = tmp_path
    _, deer, b10, b5, auc = learn.validate()  # 9 batches of 7 (the last one of 4)
    with torch.no_grad(): ref = mad_metrics(morph_score(learn.model(x)), lab)
    assert [deer, b10, b5, auc] == pytest.approx([ref['d_eer'], ref['bpcer_at_apcer_10'], ref['bpcer_at_apcer_5'],
                                                  ref['auc']], abs=1e-6)
    assert learn.recorder.metric_names[3:-1] == ['d_eer', 'bpcer_at_apcer_10', 'bpcer_at_apcer_5', 'auc']

def test_fastai_metric_in_fit_with_save_model(tmp_path):
    from fastai.callback.tracker import SaveModelCallback
    learn, *_ = fake_learner(1, [DEER()])
    learn.path = tmp_path
    learn.fit(2, 1e-2, cbs=SaveModelCallback(monitor='d_eer', comp=np.less, fname='best'))
    assert (tmp_path/'models'/'best.pth').exists()
    assert len(learn.recorder.values) == 2 and all(0 <= v[-1] <= 1 for v in learn.recorder.values)

def test_fastai_metrics_pickle():
    "A Learner carrying the metrics can be exported: they hold no lambdas."
    import pickle
    for m in (DEER(), BPCERAtAPCER(0.05), AUC()):
        m2 = pickle.loads(pickle.dumps(m))
        assert m2.name == m.name and m2(torch.tensor([-1., 1, 2]), torch.tensor([0, 0, 1])) == m(
            torch.tensor([-1., 1, 2]), torch.tensor([0, 0, 1]))

def test_fastai_metric_one_class_validation():
    m = DEER()
    with pytest.raises(ValueError, match='the validation set has only bona fide samples'):
        m(torch.randn(8, 1), torch.zeros(8))
