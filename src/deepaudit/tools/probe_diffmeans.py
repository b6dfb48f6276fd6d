"""Difference-in-means truth probe ("mass-mean" probe of Marks & Tegmark 2023): the direction
from the mean false activation to the mean true one; no fitting beyond two means."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from deepaudit.tools.registry import register_tool


@register_tool("probe_diffmeans", roles=("probe",), families=("lm",))
class DiffMeansProbe:
    pairs: ClassVar[bool] = False

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> DiffMeansProbe:
        if y is None:
            raise ValueError("probe_diffmeans is supervised: pass the trusted labels y")
        self.direction = x[y == 1].mean(0) - x[y == 0].mean(0)
        self.midpoint = 0.5 * (x[y == 1].mean(0) + x[y == 0].mean(0))
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return (x - self.midpoint) @ self.direction
