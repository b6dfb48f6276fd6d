"""The auditor's protocols, one per role. A tool is handed a public subject (a model and a
budget of trusted data) and never the planted truth; what it answers depends on its role:

- ``detect``: a ``Verdict`` on the whole model (P(planted), target, a recovered trigger);
- ``features``: a feature vector per model, for a meta-classifier the referee trains on
  *other* organisms' labels (supervised skylines only);
- ``inputs``: fitted on trusted inputs, a score per new input (higher = more anomalous);
- ``remove``: an edited copy of the model with the planted behaviour removed;
- ``localize``: hidden units ranked, most responsible first;
- ``probe``: a linear truth probe on activations (latent knowledge);
- ``edit``: an edited copy of a language model with one fact rewritten;
- ``forecast``: from a training run's measures so far, whether test accuracy will jump;
- ``reverse``: a replacement program for a model of a known task.

A tool declares its roles where it is registered (``deepaudit.tools.registry``); the
registry checks that the class has each role's methods."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy.stats import t as student
from torch import nn

from deepaudit.internals.ablation import Unit
from deepaudit.triggers import AnyTrigger, trigger_from_json


@dataclass
class Verdict:
    """A model-level answer: P(planted), optionally the target class and a recovered trigger
    (a stamp or warp for inputs, a phrase for text), and the evidence behind it (plain
    numbers and lists, stored as JSON)."""

    p_planted: float
    target: int | None = None
    trigger: AnyTrigger | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not np.isfinite(self.p_planted) or not 0.0 <= self.p_planted <= 1.0:
            raise ValueError(f"p_planted must be a probability, got {self.p_planted}")

    def to_json(self) -> dict[str, Any]:
        return {"p_planted": self.p_planted, "target": self.target, "evidence": self.evidence,
                "trigger": self.trigger.to_json() if self.trigger is not None else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        trigger = data.get("trigger")
        return cls(float(data["p_planted"]), data.get("target"), trigger_from_json(trigger) if trigger else None,
                   dict(data.get("evidence") or {}))


@runtime_checkable
class ModelDetector(Protocol):
    """detect: does the whole model carry a planted behaviour (detect, target, trigger tracks)."""

    def audit(self, subject: Any) -> Verdict: ...


@runtime_checkable
class InputDetector(Protocol):
    """inputs: ``fit`` on the trusted budget, then ``score`` new inputs (tensors or prompts)."""

    def fit(self, subject: Any) -> Any: ...

    def score(self, x: Any) -> np.ndarray: ...


@runtime_checkable
class SupervisedDetector(Protocol):
    """features: a model as a feature vector; the referee trains a meta-classifier on the
    features of *other* organisms with their labels (cross-fitted), so it sees labelled
    organisms, which no real auditor has. Registered as a skyline, not a tool."""

    def features(self, subject: Any) -> np.ndarray: ...


@runtime_checkable
class Remover(Protocol):
    """remove: an edited copy of the model (the subject's own model is left untouched)."""

    def remove(self, subject: Any) -> Any: ...


@runtime_checkable
class Localizer(Protocol):
    """localize: hidden units ``(module name, index)``, most responsible first."""

    def localize(self, subject: Any) -> list[Unit]: ...


@runtime_checkable
class Probe(Protocol):
    """probe: a linear truth probe fitted on activations from trusted contexts (latent track).
    ``x`` is ``(N, d)`` for point probes, or ``(N, 2, d)`` contrast pairs (the statement followed
    by "true", by "false") when the class sets ``pairs``; ``y`` (1 = true) trains supervised
    probes and only orients the sign of unsupervised ones. After ``fit``, ``direction`` is the
    probe's direction in activation space; ``score`` is higher for statements read as true."""

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> Any: ...

    def score(self, x: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class FactEditor(Protocol):
    """edit: rewrites one fact and returns an edited copy of the language model."""

    def edit(self, lm: Any, request: Any) -> Any: ...


Series = Mapping[str, tuple[np.ndarray, np.ndarray]]  # measure -> (steps, values) of a training run


@dataclass(frozen=True)
class Forecast:
    """P(test accuracy will jump), and the predicted step of the jump (None: no prediction)."""

    p_jump: float
    jump_step: int | None = None


@runtime_checkable
class Forecaster(Protocol):
    """forecast: reads a run's monitor measures up to now and forecasts a jump in test accuracy."""

    def forecast(self, series: Series) -> Forecast: ...


@runtime_checkable
class Program(Protocol):
    """A replacement program: answers for inputs ``(a, b)``, the frequencies it uses, JSON."""

    frequencies: tuple[int, ...]

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray: ...

    def to_json(self) -> dict[str, Any]: ...


@runtime_checkable
class ReverseEngineer(Protocol):
    """reverse: turns a model of a known task (its public card says which) into a program."""

    def reverse(self, model: nn.Module, card: dict[str, Any]) -> Program: ...


# role -> the protocol a tool of that role implements
ROLES: dict[str, type] = {"detect": ModelDetector, "features": SupervisedDetector, "inputs": InputDetector,
                          "remove": Remover, "localize": Localizer, "probe": Probe, "edit": FactEditor,
                          "forecast": Forecaster, "reverse": ReverseEngineer}


def orient_sign(scores: np.ndarray, y: np.ndarray | None) -> float:
    """+1 or -1: the sign that makes ``scores`` rank true (``y == 1``) above false on the fitting
    data; +1 without labels. Unsupervised probes learn a direction up to sign, and one bit from
    the trusted labels fixes it."""
    if y is None or len(np.unique(y)) < 2:
        return 1.0
    return 1.0 if scores[y == 1].mean() >= scores[y == 0].mean() else -1.0


def squash(statistic: float, threshold: float, slope: float = 2.0) -> float:
    """Map an anomaly statistic to a probability that is 0.5 at the tool's decision threshold."""
    return float(1.0 / (1.0 + np.exp(-slope * (statistic - threshold))))


def prediction_tail(value: float, null: np.ndarray) -> float:
    """How unlikely ``value`` is above a small sample ``null`` of the same statistic: Student's t
    prediction interval's upper tail (a new draw from the null's normal distribution, with its mean
    and spread estimated from the sample); NaN when the null has no spread."""
    spread = float(np.std(null, ddof=1)) * np.sqrt(1 + 1 / len(null)) if len(null) > 1 else 0.0
    if not spread > 0:
        return float("nan")
    return float(student.sf((value - float(np.mean(null))) / spread, len(null) - 1))


def anomaly_index(values: np.ndarray, low: bool = True) -> float:
    """MAD-based anomaly index of the most extreme value (Neural Cleanse's statistic): how
    many robust standard deviations the minimum (``low``) or maximum lies from the median."""
    median = float(np.median(values))
    mad = 1.4826 * float(np.median(np.abs(values - median))) + 1e-12
    extreme = float(values.min()) if low else float(values.max())
    return (median - extreme) / mad if low else (extreme - median) / mad
