"""Random-direction baseline probe: a Gaussian random direction, blind to the labels; any
probe must beat it (its AUROC is centred on 0.5 over seeds, with a spread set by the data)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from deepaudit.tools.registry import register_tool


@register_tool("probe_random", roles=("probe",), families=("lm",), kind="baseline")
class RandomProbe:
    pairs: ClassVar[bool] = False

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> RandomProbe:
        self.direction = np.random.default_rng(self.seed).standard_normal(x.shape[1])
        self.mean = x.mean(0)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) @ self.direction
