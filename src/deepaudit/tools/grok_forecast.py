"""Forecast, from a training run's monitor measures so far, whether and when the model's test
accuracy will jump (grokking). The forecaster sees only what a monitor records online: train
loss and accuracy, weight and gradient norms, update sizes, activation statistics, probes on
training inputs, custom measures; never test measures or post-hoc measures.

Two forecasters, one signal each:

- ``fourier_sparsity``: a grokked embedding is sparse in the Fourier basis (Nanda et al. 2023),
  and the sparsity grows during circuit formation, before the test loss falls. Alarm once the
  Gini coefficient of the embedding's frequency norms has risen by ``rise`` above its lowest
  value after memorisation; the jump is predicted where the recent trend reaches ``rise`` more.
- ``weight_norm``: weight decay shrinks the weights once the general circuit can replace the
  memorising one (cleanup). Alarm once the total weight norm has fallen by ``drop`` from its
  peak after memorisation."""

from __future__ import annotations

import numpy as np

from deepaudit.tools.base import Forecast, Series
from deepaudit.tools.registry import register_tool

MEMORISED_ACC = 0.99


def memorised_at(series: Series) -> int | None:
    """Index of the first record with train accuracy at least 99%."""
    _, acc = series["train_acc"]
    hits = np.flatnonzero(acc >= MEMORISED_ACC)
    return int(hits[0]) if len(hits) else None


def _aligned(series: Series, measure: str, start_step: int) -> tuple[np.ndarray, np.ndarray]:
    steps, values = series[measure]
    keep = steps >= start_step
    return steps[keep], values[keep]


@register_tool("fourier_sparsity", roles=("forecast",), families=("training",))
class FourierSparsityForecaster:
    """Alarm on a rise of the embedding's Fourier sparsity after memorisation."""

    measure = "fourier/embed_gini"

    def __init__(self, seed: int = 0, rise: float = 0.1, window: int = 5):
        self.rise, self.window = rise, window

    def forecast(self, series: Series) -> Forecast:
        i = memorised_at(series)
        if i is None:
            return Forecast(0.0)
        steps, gini = _aligned(series, self.measure, int(series["train_acc"][0][i]))
        if len(gini) < 2:
            return Forecast(0.0)
        low = float(np.min(gini))
        gained = float(gini[-1] - low)
        p_jump = float(np.clip(gained / self.rise, 0.0, 1.0)) * 0.5 + (0.5 if gained >= self.rise else 0.0)
        recent = slice(-min(self.window, len(gini)), None)
        slope = np.polyfit(steps[recent], gini[recent], 1)[0] if len(gini[recent]) >= 2 else 0.0
        jump = int(steps[-1] + max(0.0, low + 2 * self.rise - gini[-1]) / slope) if slope > 0 else None
        return Forecast(min(p_jump, 1.0), jump)


@register_tool("weight_norm", roles=("forecast",), families=("training",))
class WeightNormForecaster:
    """Alarm on a fall of the total weight norm from its peak after memorisation."""

    measure = "weight_norm/total"

    def __init__(self, seed: int = 0, drop: float = 0.2):
        self.drop = drop

    def forecast(self, series: Series) -> Forecast:
        i = memorised_at(series)
        if i is None:
            return Forecast(0.0)
        steps, norm = _aligned(series, self.measure, int(series["train_acc"][0][i]))
        peak = float(np.max(norm))
        fallen = 1.0 - float(norm[-1]) / peak
        p_jump = float(np.clip(fallen / self.drop, 0.0, 1.0)) * 0.5 + (0.5 if fallen >= self.drop else 0.0)
        return Forecast(min(p_jump, 1.0), int(steps[-1]) if fallen >= self.drop else None)

