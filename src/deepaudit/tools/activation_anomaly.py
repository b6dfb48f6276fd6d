"""Input-level anomaly detection on activation features (used on language models, whose inputs
are text): fitted on features of trusted prompts only, an input scores higher the less it looks
like them. Three scikit-learn outlier models behind one class, as one family: Mahalanobis distance
under a Ledoit-Wolf covariance (Mallen et al. 2023's detector), an isolation forest, and the local
outlier factor (novelty mode, so it scores unseen inputs)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.preprocessing import StandardScaler


class ActivationAnomaly:
    """``fit`` on trusted features ``(N, d)``; ``score`` returns an anomaly score per row."""

    method: ClassVar[str] = "mahalanobis"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, features: np.ndarray) -> ActivationAnomaly:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or len(features) < 2 or not np.isfinite(features).all():
            raise ValueError(f"{self.method} outlier model: need a finite (N >= 2, d) feature matrix, "
                             f"got shape {features.shape}")
        self.scaler = StandardScaler().fit(features)
        z = self.scaler.transform(features)
        if self.method == "mahalanobis":
            self.model = LedoitWolf().fit(z)
        elif self.method == "isoforest":
            self.model = IsolationForest(n_estimators=200, random_state=self.seed).fit(z)
        else:
            self.model = LocalOutlierFactor(n_neighbors=min(20, len(z) - 1), novelty=True).fit(z)
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        z = self.scaler.transform(np.asarray(features, dtype=np.float64))
        if self.method == "mahalanobis":
            return self.model.mahalanobis(z)
        return -self.model.score_samples(z)  # scikit-learn: higher score_samples = more normal


class ActivationIsolationForest(ActivationAnomaly):
    method: ClassVar[str] = "isoforest"


class ActivationLOF(ActivationAnomaly):
    method: ClassVar[str] = "lof"
