"""The numpy detection metrics behind the bootstrap agree with scikit-learn's definitions."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score, roc_curve

from deepaudit.metrics import DETECT_METRICS


def _sklearn_fpr95(y: np.ndarray, p: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    return float(fpr[np.searchsorted(tpr, 0.95, side="left")])


REFERENCE = {
    "auroc": roc_auc_score,
    "aupr": average_precision_score,
    "fpr95": _sklearn_fpr95,
    "logloss": lambda y, p: log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1]),
}


@pytest.mark.parametrize("metric", sorted(DETECT_METRICS))
def test_metric_matches_sklearn_with_ties(metric):
    """On 200 random label/score sets with many tied scores, each metric equals sklearn's."""
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(200):
        n = int(rng.integers(4, 60))
        y = rng.integers(0, 2, n)
        if len(set(y)) < 2:
            continue
        p = np.round(rng.random(n), 1)
        assert DETECT_METRICS[metric](y, p) == pytest.approx(REFERENCE[metric](y, p), abs=1e-9)
        checked += 1
    assert checked > 150
