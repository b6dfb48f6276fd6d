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
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from deepaudit.data import DATASETS, load_dataset
from deepaudit.data.datasets import SPLITS
from deepaudit.errors import DataError, OrganismError
from deepaudit.findings import Findings
from deepaudit.models import build_model
from deepaudit.models.architectures import check_shape, check_size
from deepaudit.weights import build_and_load

CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.safetensors"
CARD_KEYS = ("arch", "arch_kwargs", "dataset", "input_shape", "num_classes", "value_range")
MAX_CARD_BYTES = 4 << 20  # a card is a few hundred bytes; its layer list grows with the model, never this far


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
    """Read and validate an organism's public card: every required field present and of the
    right kind (sizes are positive integers), so that nothing downstream trips on it."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        raise OrganismError(f"missing model card: {path} (an organism folder needs {CARD_FILE})")
    if path.stat().st_size > MAX_CARD_BYTES:
        raise OrganismError(f"model card {path} is {path.stat().st_size:,} bytes; a card is at most {MAX_CARD_BYTES:,}")
    try:
        card = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OrganismError(f"model card {path} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise OrganismError(f"model card {path} is nested too deeply to be a card") from exc
    if not isinstance(card, dict):
        raise OrganismError(f"model card {path} must be a JSON object, not {type(card).__name__}")
    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        raise OrganismError(f"model card {path} lacks the fields {missing}")
    problem = _card_problem(card)
    if problem:
        raise OrganismError(f"model card {path}: {problem}")
    return card


def _card_problem(card: dict[str, Any]) -> str | None:
    """What is wrong with a card's required fields (None if nothing)."""
    for key in ("arch", "dataset"):
        if not isinstance(card[key], str):
            return f"{key} must be a string, got {card[key]!r}"
    if not isinstance(card["arch_kwargs"], dict):
        return f"arch_kwargs must be a JSON object of sizes, got {card['arch_kwargs']!r}"
    try:
        check_shape("input_shape", card["input_shape"])
        check_size("num_classes", card["num_classes"])
    except ValueError as exc:
        return str(exc)
    bounds = card["value_range"]
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)
            or bounds[0] > bounds[1]):
        return f"value_range must be [low, high], two finite numbers with low <= high, got {bounds!r}"
    if card.get("clean_split", "audit") not in SPLITS:
        return f"clean_split must be one of {SPLITS}, got {card['clean_split']!r}"
    return None


def card_builder(card: dict[str, Any], card_source: str = "the card") -> Callable[[], nn.Module]:
    """A function that builds the card's architecture (random weights), turning a card that
    cannot build one into an OrganismError that names ``card_source``."""
    def build() -> nn.Module:
        try:
            return build_model(card["arch"], card["input_shape"], card["num_classes"], **card.get("arch_kwargs", {}))
        except (ValueError, TypeError) as exc:
            raise OrganismError(f"{card_source} cannot build its architecture: {exc}") from exc

    return build


def model_from_card(card: dict[str, Any], weights: Path, trust_pickle: bool = False,
                    card_source: str = "the card") -> nn.Module:
    """Rebuild the card's architecture and load ``weights`` into it. The card's sizes are checked
    against the weights' shapes on the meta device before the model is built for real
    (``deepaudit.weights.check_fits``), so a card cannot make deepaudit allocate more than the
    weights file holds."""
    return build_and_load(card_builder(card, card_source), weights, trust_pickle)


def load_model(folder: Path, card: dict[str, Any] | None = None) -> nn.Module:
    """Rebuild an organism's architecture from its card and load its safetensors weights."""
    folder = Path(folder)
    card = card or read_card(folder)
    return model_from_card(card, folder / WEIGHTS_FILE, card_source=f"model card {folder / CARD_FILE}")


def load_subject(folder: Path, budget: int = 256, seed: int = 0) -> Subject:
    """Build a Subject from the public part of an organism folder and ``budget`` clean inputs
    drawn (with ``seed``) from the card's clean-data split."""
    if budget <= 0:
        raise DataError(f"the clean data budget must be positive, got {budget}")
    card = read_card(folder)
    if card["dataset"] not in DATASETS:
        raise OrganismError(f"model card {Path(folder) / CARD_FILE} names the data set {card['dataset']!r}; "
                            f"built-in ones are {sorted(DATASETS)}")
    model = load_model(folder, card)
    data = load_dataset(card["dataset"])
    x, y = data.split(card.get("clean_split", "audit"))
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:budget]
    return Subject(model=model, card=card, clean_x=x[idx], clean_y=y[idx])
