"""Scores over organisms with percentile-bootstrap 95% intervals. Every aggregated score has
one JSON shape, ``{"value", "ci_low", "ci_high", "n"}`` (``Metric``).

The detection metrics are written with numpy (they agree with scikit-learn's to 1e-12, which
a test checks) because a bootstrap calls them thousands of times per leaderboard cell and
scikit-learn's input validation dominates at these sizes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

N_BOOTSTRAP = 1000
Metric = dict[str, float]  # {"value", "ci_low", "ci_high", "n"}


def auroc_score(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties)."""
    positives = labels == 1
    n1, n0 = int(positives.sum()), int((~positives).sum())
    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision: mean over positives of the precision at their score (ties grouped)."""
    pos = np.sort(scores[labels == 1])
    at_or_above = len(scores) - np.searchsorted(np.sort(scores), pos, side="left")
    true_at_or_above = len(pos) - np.searchsorted(pos, pos, side="left")
    return float(np.mean(true_at_or_above / at_or_above))


def fpr_at_tpr(labels: np.ndarray, scores: np.ndarray, tpr: float = 0.95) -> float:
    """False-positive rate at the highest threshold that catches ``tpr`` of the positives."""
    pos = np.sort(scores[labels == 1])[::-1]
    threshold = pos[int(np.ceil(tpr * len(pos) - 1e-9)) - 1]
    return float(np.mean(scores[labels == 0] >= threshold))


def _logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    p = np.clip(probs, 1e-6, 1 - 1e-6)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


DETECT_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "auroc": auroc_score,
    "aupr": average_precision,
    "fpr95": fpr_at_tpr,
    "logloss": _logloss,
}


def calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error (Naeini et al., AAAI 2015): over ``bins`` equal-width bins of
    P(planted), the gap between the mean predicted and the observed planted share, weighted by
    the bin's share of organisms."""
    labels, probs = np.asarray(labels, dtype=float), np.asarray(probs, dtype=float)
    which = np.clip(np.digitize(probs, np.linspace(0.0, 1.0, bins + 1)[1:-1]), 0, bins - 1)
    return float(sum(abs(labels[which == b].mean() - probs[which == b].mean()) * np.mean(which == b)
                     for b in np.unique(which)))


def bootstrap_ci(statistic: Callable[[np.ndarray], float], n: int, seed: int = 0,
                 need_both: np.ndarray | None = None) -> tuple[float, float]:
    """95% percentile interval of ``statistic(indices)`` over resamples of ``n`` items.
    With ``need_both`` (binary labels), resamples lacking one class are skipped."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(N_BOOTSTRAP):
        idx = rng.integers(0, n, n)
        if need_both is not None and len(np.unique(need_both[idx])) < 2:
            continue
        values.append(statistic(idx))
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def detect_scores(labels: np.ndarray, probs: np.ndarray, seed: int = 0) -> dict[str, dict[str, float]]:
    """AUROC, AUPR, FPR at 95% TPR and log-loss, each with a bootstrap CI over organisms."""
    labels, probs = np.asarray(labels, dtype=int), np.asarray(probs, dtype=float)
    if len(np.unique(labels)) < 2:
        return {}
    out = {}
    for name, metric in DETECT_METRICS.items():
        def resampled(idx: np.ndarray, metric: Callable[[np.ndarray, np.ndarray], float] = metric) -> float:
            return metric(labels[idx], probs[idx])

        ci = bootstrap_ci(resampled, len(labels), seed, need_both=labels)
        out[name] = {"value": metric(labels, probs), "ci_low": ci[0], "ci_high": ci[1], "n": int(len(labels))}
    return out


def mean_with_ci(values: Sequence[float | None] | np.ndarray, seed: int = 0) -> Metric:
    """The mean of the finite values and a bootstrap CI of it ({} when there are none)."""
    kept = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(kept) == 0:
        return {}
    ci = bootstrap_ci(lambda idx: float(kept[idx].mean()), len(kept), seed)
    return {"value": float(kept.mean()), "ci_low": ci[0], "ci_high": ci[1], "n": int(len(kept))}


def auroc_with_ci(labels: np.ndarray, scores: np.ndarray, seed: int = 0) -> Metric:
    """AUROC and its percentile-bootstrap 95% interval over the scored items."""
    ci = bootstrap_ci(lambda idx: auroc_score(labels[idx], scores[idx]), len(labels), seed, need_both=labels)
    return {"value": auroc_score(labels, scores), "ci_low": ci[0], "ci_high": ci[1], "n": int(len(labels))}


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """AUROC of scores where ``positives`` should rank above ``negatives``."""
    y = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    return float(roc_auc_score(y, np.r_[negatives, positives]))


def mask_iou(recovered: np.ndarray, true_mask: np.ndarray) -> float:
    """IoU of the recovered mask's top-k cells with the true mask (k = true mask size): a
    ranking measure, free of the tool's choice of mask scale."""
    truth = np.asarray(true_mask).ravel() > 0.5
    k = int(truth.sum())
    top = np.zeros_like(truth)
    top[np.argsort(-np.asarray(recovered).ravel(), kind="stable")[:k]] = True
    return float((top & truth).sum() / (top | truth).sum())
