"""Fixtures shared by the test files."""
import warnings
import pytest
from ssl_mae.learner import predict

@pytest.fixture
def exported_scores(tmp_path):
    "A function: export `learn` to `tmp_path/export.pkl`, then score `paths` with it live and from the file."
    def score_both(learn, paths):
        learn.export(tmp_path/'export.pkl')
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return predict(learn, paths), predict(tmp_path/'export.pkl', paths)
    return score_both
