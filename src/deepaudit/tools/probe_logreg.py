"""Logistic-regression truth probe (the supervised baseline of Marks & Tegmark 2023 and
Mallen et al. 2023): standardised activations, L2-regularised logistic regression."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from deepaudit.tools.registry import register_tool


@register_tool("probe_logreg", roles=("probe",), families=("lm",))
class LogRegProbe:
    pairs: ClassVar[bool] = False

    def __init__(self, seed: int = 0, C: float = 0.1):
        self.seed, self.C = seed, C

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> LogRegProbe:
        if y is None:
            raise ValueError("probe_logreg is supervised: pass the trusted labels y")
        self.pipe = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed))
        self.pipe.fit(x, y)
        scaler, clf = self.pipe[0], self.pipe[1]
        self.direction = clf.coef_[0] / scaler.scale_
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.pipe.decision_function(x)
