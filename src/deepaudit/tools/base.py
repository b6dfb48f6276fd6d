"""The auditor's protocols. A tool is handed a ``Subject`` (model + clean budget) and never
the planted truth. Model-level detectors answer with a ``Verdict``; input-level anomaly
detectors are fitted on trusted inputs and score new ones (higher = more anomalous);
supervised skylines turn a model into features for a meta-classifier the referee trains;
removers return an edited copy of the model, and localizers rank the hidden units."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from deepaudit.internals.ablation import Unit
from deepaudit.subject import Subject
from deepaudit.triggers import Trigger


@dataclass
class Verdict:
    """A model-level answer: P(planted), optionally the target class and a recovered trigger,
    and the evidence behind it (plain numbers and lists, stored as JSON)."""

    p_planted: float
    target: int | None = None
    trigger: Trigger | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not np.isfinite(self.p_planted) or not 0.0 <= self.p_planted <= 1.0:
            raise ValueError(f"p_planted must be a probability, got {self.p_planted}")


@runtime_checkable
class ModelDetector(Protocol):
    """Answers whether a whole model carries a planted behaviour (detect, target, trigger tracks)."""

    name: ClassVar[str]

    def audit(self, subject: Subject) -> Verdict: ...


@runtime_checkable
class InputDetector(Protocol):
    """Flags anomalous inputs (the inputs track): ``fit`` on the trusted budget, then ``score``."""

    name: ClassVar[str]

    def fit(self, subject: Subject) -> "InputDetector": ...

    def score(self, x: torch.Tensor) -> np.ndarray: ...


@runtime_checkable
class SupervisedDetector(Protocol):
    """A skyline: maps a model to a feature vector; the referee trains a meta-classifier on
    the features of *other* organisms with their labels (cross-fitted), so it sees labelled
    organisms, which no real auditor has. Reported as a skyline, not a tool."""

    name: ClassVar[str]

    def features(self, subject: Subject) -> np.ndarray: ...


@runtime_checkable
class Remover(Protocol):
    """Returns an edited copy of the model with the planted behaviour removed (remove track);
    the subject's own model is left untouched."""

    name: ClassVar[str]

    def remove(self, subject: Subject) -> nn.Module: ...


@runtime_checkable
class Localizer(Protocol):
    """Ranks hidden units ``(module name, channel index)``, most responsible first (localize track)."""

    name: ClassVar[str]

    def localize(self, subject: Subject) -> list[Unit]: ...


@runtime_checkable
class Probe(Protocol):
    """A linear truth probe fitted on activations from trusted contexts (latent-knowledge track).
    ``x`` is ``(N, d)`` for point probes, or ``(N, 2, d)`` contrast pairs (the statement followed
    by "true", by "false") when ``pairs`` is set; ``y`` (1 = true) trains supervised probes and
    only orients the sign of unsupervised ones. After ``fit``, ``direction`` is the probe's
    direction in activation space; ``score`` is higher for statements the probe reads as true."""

    name: ClassVar[str]
    pairs: ClassVar[bool]

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> "Probe": ...

    def score(self, x: np.ndarray) -> np.ndarray: ...


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


def anomaly_index(values: np.ndarray, low: bool = True) -> float:
    """MAD-based anomaly index of the most extreme value (Neural Cleanse's statistic): how
    many robust standard deviations the minimum (``low``) or maximum lies from the median."""
    median = float(np.median(values))
    mad = 1.4826 * float(np.median(np.abs(values - median))) + 1e-12
    extreme = float(values.min()) if low else float(values.max())
    return (median - extreme) / mad if low else (extreme - median) / mad
