"""Scores over organisms (scikit-learn's metrics) with percentile-bootstrap 95% intervals."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score, roc_curve

N_BOOTSTRAP = 1000


def fpr_at_tpr(labels: np.ndarray, scores: np.ndarray, tpr: float = 0.95) -> float:
    """False-positive rate at the first threshold that reaches ``tpr`` true positives."""
    fprs, tprs, _ = roc_curve(labels, scores)
    return float(fprs[np.searchsorted(tprs, tpr, side="left")])


def _logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(log_loss(labels, np.clip(probs, 1e-6, 1 - 1e-6), labels=[0, 1]))


DETECT_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "auroc": lambda y, p: float(roc_auc_score(y, p)),
    "aupr": lambda y, p: float(average_precision_score(y, p)),
    "fpr95": fpr_at_tpr,
    "logloss": _logloss,
}


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
        value = metric(labels, probs)
        ci = bootstrap_ci(lambda idx: metric(labels[idx], probs[idx]), len(labels), seed, need_both=labels)
        out[name] = {"value": value, "ci_low": ci[0], "ci_high": ci[1]}
    return out


def mean_with_ci(values: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Mean, standard deviation, and a bootstrap CI of the mean."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(values) == 0:
        return {}
    ci = bootstrap_ci(lambda idx: float(values[idx].mean()), len(values), seed)
    return {"value": float(values.mean()), "std": float(values.std()), "ci_low": ci[0], "ci_high": ci[1],
            "n": int(len(values))}


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
