"""Contrast-pair PCA truth probe (Burns et al. 2022's CRC-TPC): normalise the "true" and
"false" completions separately, take the top principal component of their differences, and
score a pair by its difference's projection; the labels only fix the sign."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.decomposition import PCA

from deepaudit.tools.base import orient_sign
from deepaudit.tools.registry import register_tool


@register_tool("probe_pca", roles=("probe",), families=("lm",))
class ContrastPCAProbe:
    pairs: ClassVar[bool] = True

    def __init__(self, seed: int = 0):
        self.seed = seed

    def _diff(self, x: np.ndarray) -> np.ndarray:
        return (x[:, 0] - self.mean[0]) / self.std[0] - (x[:, 1] - self.mean[1]) / self.std[1]

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> ContrastPCAProbe:
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        diff = self._diff(x)
        pca = PCA(n_components=1, random_state=self.seed).fit(diff)
        self.component, self.center = pca.components_[0], pca.mean_
        self.sign = orient_sign((diff - self.center) @ self.component, y)
        self.direction = self.sign * self.component / self.std[0]
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.sign * (self._diff(x) - self.center) @ self.component
