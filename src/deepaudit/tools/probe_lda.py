"""Linear discriminant analysis truth probe: the difference in means whitened by the shared
(Ledoit-Wolf shrunk) covariance, i.e. difference in means corrected for correlated noise."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from deepaudit.tools.registry import register_tool


@register_tool("probe_lda", roles=("probe",), families=("lm",))
class LDAProbe:
    pairs: ClassVar[bool] = False

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> LDAProbe:
        if y is None:
            raise ValueError("probe_lda is supervised: pass the trusted labels y")
        self.lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x, y)
        self.direction = self.lda.coef_[0]
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.lda.decision_function(x)
