"""What an auditor is handed: a model and a budget of clean data, never the planted truth.

``load_subject`` reads only the public part of an organism folder (``card.json`` and
``weights.safetensors``); the sealed ``truth.json`` is the referee's alone, and a Subject
keeps no path back to the folder. ``TrainingSubject`` is the same for a training run: the
final model and the measures a monitor recorded online (no test measure). Language models
have theirs in ``deepaudit.lm.subject``. Every subject counts the examples forwarded through
its model and carries the organism's shared findings (``deepaudit.findings``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from deepaudit.data import load_dataset
from deepaudit.errors import DataError, OrganismError
from deepaudit.findings import Findings
from deepaudit.models import build_model
from deepaudit.weights import load_into, load_state_dict

CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.safetensors"
CARD_KEYS = ("arch", "arch_kwargs", "dataset", "input_shape", "num_classes", "value_range")


class CostMeter:
    """Counts the examples forwarded through a model (one per example per forward pass)."""

    def __init__(self, model: nn.Module):
        self.forward_passes = 0
        model.register_forward_pre_hook(self._count)

    def _count(self, _module: nn.Module, inputs: tuple) -> None:
        if inputs and isinstance(inputs[0], torch.Tensor):
            self.forward_passes += int(inputs[0].shape[0])


def _freeze(model: nn.Module) -> CostMeter:
    """Eval mode, no gradients for the weights, and a meter on the forward passes."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return CostMeter(model)


@dataclass
class Subject:
    """A model under audit with its public card and a labelled budget of trusted clean inputs."""

    family: ClassVar[str] = "vision"

    model: nn.Module
    card: dict[str, Any]
    clean_x: torch.Tensor
    clean_y: torch.Tensor
    findings: Findings = field(default_factory=Findings, repr=False)
    meter: CostMeter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_budget(self.clean_x, self.clean_y, tuple(self.card["input_shape"]))
        self.meter = _freeze(self.model)

    @property
    def forward_passes(self) -> int:
        return self.meter.forward_passes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.card["input_shape"])

    @property
    def num_classes(self) -> int:
        return int(self.card["num_classes"])

    @property
    def value_range(self) -> tuple[float, float]:
        lo, hi = self.card["value_range"]
        return float(lo), float(hi)

    @property
    def feature_layer(self) -> str:
        return self.card["feature_layer"]

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Logits for ``x``, in batches."""
        return torch.cat([self.model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


@dataclass
class TrainingSubject:
    """A trained model with its public card, and the measures its training monitor recorded
    online, step by step (train loss and accuracy, norms, probes on training inputs; never a
    test measure or a measure computed after training)."""

    family: ClassVar[str] = "training"

    model: nn.Module
    card: dict[str, Any]
    series: Mapping[str, tuple[Any, Any]]
    findings: Findings = field(default_factory=Findings, repr=False)
    meter: CostMeter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.meter = _freeze(self.model)

    @property
    def forward_passes(self) -> int:
        return self.meter.forward_passes


def check_budget(x: torch.Tensor, y: torch.Tensor, input_shape: tuple[int, ...]) -> None:
    """Refuse an empty, mis-shaped or non-finite clean data budget with a clear message."""
    if len(x) == 0:
        raise DataError("the clean data budget is empty; an auditor needs at least one trusted input")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise DataError(f"clean data has shape {tuple(x.shape[1:])} per input, "
                        f"but the model expects {tuple(input_shape)}")
    if len(y) != len(x):
        raise DataError(f"clean data has {len(x)} inputs but {len(y)} labels")
    if not torch.isfinite(x).all():
        raise DataError("the clean data budget contains NaN or infinite values")


def read_card(folder: Path) -> dict[str, Any]:
    """Read and validate an organism's public card."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        raise OrganismError(f"missing model card: {path} (an organism folder needs {CARD_FILE})")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise OrganismError(f"model card {path} is not valid JSON: {exc}") from exc
    if not isinstance(card, dict):
        raise OrganismError(f"model card {path} must be a JSON object, not {type(card).__name__}")
    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        raise OrganismError(f"model card {path} lacks the fields {missing}")
    return card


def load_model(folder: Path, card: dict[str, Any] | None = None) -> nn.Module:
    """Rebuild an organism's architecture from its card and load its safetensors weights."""
    folder = Path(folder)
    card = card or read_card(folder)
    model = build_model(card["arch"], tuple(card["input_shape"]), card["num_classes"], **card["arch_kwargs"])
    return load_into(model, load_state_dict(folder / WEIGHTS_FILE), str(folder / WEIGHTS_FILE))


def load_subject(folder: Path, budget: int = 256, seed: int = 0) -> Subject:
    """Build a Subject from the public part of an organism folder and ``budget`` clean inputs
    drawn (with ``seed``) from the card's clean-data split."""
    if budget <= 0:
        raise DataError(f"the clean data budget must be positive, got {budget}")
    card = read_card(folder)
    model = load_model(folder, card)
    data = load_dataset(card["dataset"])
    x, y = data.split(card.get("clean_split", "audit"))
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:budget]
    return Subject(model=model, card=card, clean_x=x[idx], clean_y=y[idx])
