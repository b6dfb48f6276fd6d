"""The training family: organisms whose training run is part of what is audited. Today, one-layer
transformers that grok modular addition (Nanda et al. 2023) and their two controls (no weight
decay: memorises, never generalises; 80% of the data: generalises at once). A subject holds the
final model, its card (the task and modulus) and the measures its monitor recorded online; the
kit holds the whole run (test measures too) and the key frequencies the builder measured."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from deepaudit.internals.fourier import all_pairs
from deepaudit.subject import TrainingSubject, load_model, read_card
from deepaudit.tools.base import Series
from deepaudit.zoo.family import Family, Kit, Organism, Spec, register_family
from deepaudit.zoo.folder import BuildResult, read_truth
from deepaudit.zoo.training.build import TRAINING_FILE, build_grok_organism, read_series
from deepaudit.zoo.training.spec import GrokSpec, grok_specs
from deepaudit.zoo.training.train import GROKKED_ACC


@register_family
class TrainingFamily(Family):
    name = "training"
    default_budget = 0  # a training subject has no trusted data budget: it has the run's own measures
    slices = ("role",)

    def specs(self, suite: dict[str, Any], seed: int) -> list[Spec]:
        """The preset's organism and two controls for each of the suite's seeds (shifted by the game seed)."""
        seeds = tuple(100 * seed + s for s in suite.get("seeds", [0]))
        return list(grok_specs(suite.get("preset", "full"), seeds))

    def build(self, spec: Spec, out: Path, store: Path) -> BuildResult:
        assert isinstance(spec, GrokSpec)
        return build_grok_organism(spec, out, store)

    def open(self, folder: Path, seed: int, budget: int, settings: Mapping[str, Any]) -> Organism:
        return TrainingOrganism(folder, seed, budget)

    @staticmethod
    def labels(truth: dict[str, Any]) -> dict[str, Any]:
        """A training run's labels: its role and whether it grokked (nothing is planted)."""
        return {"planted": False, "role": truth["role"], "pair": truth["organism_id"], "grokked": bool(truth["grokked"])}

    def describe(self, truth: dict[str, Any]) -> dict[str, Any]:
        phases = truth["phases"]
        return {"role": truth["role"], "key frequencies": truth["key_frequencies"],
                "train acc": round(truth["final_train_acc"], 3), "test acc": round(truth["final_test_acc"], 3),
                "memorised": phases["memorised_step"], "cleanup": phases["cleanup_step"],
                "grokked": phases["grok_step"], "train s": truth["train_wall_s"]}


class TrainingOrganism(Organism):
    def fresh_subject(self) -> TrainingSubject:
        series = read_series(json.loads((self.folder / TRAINING_FILE).read_text()))
        return TrainingSubject(load_model(self.folder), read_card(self.folder), series)

    def make_kit(self) -> Kit:
        return TrainingKit(self.folder)


class TrainingKit(Kit):
    """The whole recorded run, the final model and its task."""

    def __init__(self, folder: Path):
        truth = read_truth(folder)
        super().__init__(truth, TrainingFamily.labels(truth), frozenset({"forecast", "reverse"}))
        self.folder = folder
        self.series: Series = read_series(truth["series"])
        self.modulus = int(truth["spec"]["p"])
        self.key_frequencies: list[int] = list(truth["key_frequencies"])

    @cached_property
    def original(self) -> nn.Module:
        return load_model(self.folder).eval()

    def jump_step(self) -> int | None:
        """First step from which test accuracy stays at 95% or more (None: it never does)."""
        steps, acc = self.series["test_acc"]
        above = acc >= GROKKED_ACC
        if not above[-1]:
            return None
        below = np.flatnonzero(~above)
        return int(steps[below[-1] + 1]) if len(below) else int(steps[0])

    def baseline_alarm(self) -> int | None:
        """A watcher of the test loss: the first step at which it is below half its peak so far."""
        steps, loss = self.series["test_loss"]
        hits = np.flatnonzero(loss < 0.5 * np.maximum.accumulate(loss))
        return int(steps[hits[0]]) if len(hits) else None

    def all_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every input pair ``(a, b)`` and its true answer ``(a + b) mod p``."""
        pairs = all_pairs(self.modulus).numpy()
        return pairs, (pairs[:, 0] + pairs[:, 1]) % self.modulus
