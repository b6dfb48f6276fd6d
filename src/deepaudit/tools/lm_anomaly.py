"""Input-level anomaly detection for language models (inputs track): an activation outlier model
(tools/activation_anomaly.py) fitted on features of the trusted prompts only. Features are the
last-token residual at one layer (default: two thirds of the depth), or, with ``features="probe"``,
the log-odds of a logistic truth probe at every layer (Mallen et al. 2023's detector reads probe
outputs), which needs the trusted labels: the probes are fitted on one half of the trusted
prompts and the outlier model on the other, so that it sees held-out probe outputs."""

from __future__ import annotations

import numpy as np

from deepaudit.errors import DataError
from deepaudit.lm.subject import LMSubject
from deepaudit.tools.activation_anomaly import ActivationAnomaly, ActivationIsolationForest, ActivationLOF
from deepaudit.tools.probe_logreg import LogRegProbe
from deepaudit.tools.registry import register_tool

DETECTORS = {cls.method: cls for cls in (ActivationAnomaly, ActivationIsolationForest, ActivationLOF)}


def _variants(cls: type) -> type:
    """One registered tool per outlier model and feature kind, e.g. ``mahalanobis@layer``."""
    for features in ("layer", "probe"):
        for method in DETECTORS:
            register_tool(f"{method}@{features}", roles=("inputs",), families=("lm",),
                          needs=("labels",) if features == "probe" else (),
                          preset={"method": method, "features": features})(cls)
    return cls


@_variants
class LMAnomaly:
    def __init__(self, seed: int = 0, method: str = "mahalanobis", features: str = "layer",
                 layer_fraction: float = 2 / 3):
        if method not in DETECTORS or features not in ("layer", "probe"):
            raise ValueError(f"method must be one of {sorted(DETECTORS)}, features 'layer' or 'probe'")
        self.seed, self.method, self.features, self.layer_fraction = seed, method, features, layer_fraction

    def _features(self, prompts: list[str]) -> np.ndarray:
        if self.features == "layer":
            return self.subject.residuals(prompts, [self.layer])[0]
        acts = self.subject.residuals(prompts)
        return np.stack([probe.score(acts[i]) for i, probe in enumerate(self.probes)], axis=1)

    def fit(self, subject: LMSubject) -> LMAnomaly:
        self.subject = subject
        self.layer = int(round(self.layer_fraction * (subject.n_layers - 1)))
        prompts = subject.trusted_prompts
        if self.features == "probe":
            labels = subject.trusted_labels
            if labels is None or len(np.unique(labels)) < 2:
                raise DataError("probe features need trusted prompts labelled with both classes")
            order = np.random.default_rng(self.seed).permutation(len(prompts))
            probe_idx, fit_idx = order[: len(order) // 2], order[len(order) // 2 :]
            acts = subject.residuals([prompts[i] for i in probe_idx])
            self.probes = [LogRegProbe(self.seed).fit(acts[i], labels[probe_idx]) for i in range(len(acts))]
            prompts = [prompts[i] for i in fit_idx]
        self.detector = DETECTORS[self.method](self.seed).fit(self._features(prompts))
        return self

    def score(self, prompts: list[str]) -> np.ndarray:
        return self.detector.score(self._features(prompts))
