"""Cross-fitted predictions for supervised skylines: per group of organisms that share their
family's context labels (data set and architecture, for vision), a logistic-regression
meta-classifier is trained on the features of the other folds' organisms and predicts the
held-out fold. Twins share a fold, so a trojan is never scored by a classifier that saw its
own twin."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def cross_fitted(cells: Sequence[dict[str, Any]], context: Sequence[str], folds: int = 5) -> dict[str, float]:
    """organism id -> P(planted) from a meta-classifier that never saw that organism's pair."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for cell in cells:
        groups[tuple(cell["labels"].get(key) for key in context)].append(cell)
    out: dict[str, float] = {}
    for members in groups.values():
        x = np.array([c["answer"]["features"] for c in members])
        y = np.array([c["labels"]["planted"] for c in members], dtype=int)
        pairs = np.array([c["labels"]["pair"] for c in members])
        probs = np.full(len(members), 0.5)
        n_splits = min(folds, len(set(pairs)))
        if n_splits >= 2:
            for train, test in GroupKFold(n_splits=n_splits).split(x, y, pairs):
                if len(set(y[train])) == 2:
                    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
                    probs[test] = model.fit(x[train], y[train]).predict_proba(x[test])[:, 1]
        out.update({c["organism_id"]: float(p) for c, p in zip(members, probs)})
    return out
