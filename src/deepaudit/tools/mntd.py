"""Meta Neural Trojan Detection with jumbo learning and query tuning (MNTD; Xu et al., S&P 2021),
trained only on shadow models the auditor makes itself: of the card's architecture, on its own
trusted budget, half of them clean and half carrying a random trigger of the auditor's own drawing
(the jumbo distribution: patches and blends, all-to-one and one-to-one mappings, random poison
rates). A meta-classifier reads a model's softmax outputs on a few query inputs; the queries are
optimised jointly with its linear layer over the shadows. No zoo label, trigger or recipe is used.

P(planted) is the sigmoid of the meta-classifier's score on the audited model. It ranks models of
one task, but it is not calibrated: shadows trained on a budget are less confident than models
trained on a full data set, and the score moves with that (the answer says so, and gives no
p-value, so calibrated combinations leave it out). When the meta-classifier cannot tell apart the
held-out half of its own shadows (AUROC below ``min_shadow_auroc``, set a priori at 0.75; on
MNIST-1D a budget does not teach the task), the answer is inconclusive. Shadows and the fitted
meta-classifier are cached per architecture and budget (``deepaudit.tools.shadow``); their one-off
cost is reported in the evidence, apart from the per-model cost (ten forward passes)."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from filelock import FileLock
from torch import nn

from deepaudit.metrics import auroc_score
from deepaudit.paths import atomic_write_text
from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict
from deepaudit.tools.registry import register_tool
from deepaudit.tools.shadow import shadow_folder, shadow_set, train_shadow
from deepaudit.triggers import Trigger

JUMBO = {"name": "mntd-jumbo", "version": 1}


def jumbo_trigger(rng: np.random.Generator, input_shape: tuple[int, ...],
                  value_range: tuple[float, float]) -> Trigger:
    """A random trigger of the auditor's own: a patch (a small square, or a window of a sequence,
    with a random binary pattern) or a faint blend of a random pattern over the whole input."""
    lo, hi = value_range
    spatial = input_shape[1:]
    if rng.random() < 0.5:
        mask = np.zeros(spatial, np.float32)
        size = int(rng.integers(2, 4)) if len(spatial) == 2 else int(rng.integers(3, 8))
        corner = [int(rng.integers(0, n - size + 1)) for n in spatial]
        mask[tuple(slice(c, c + size) for c in corner)] = 1.0
        pattern = rng.choice([lo, hi], size=input_shape).astype(np.float32)
    else:
        mask = np.full(spatial, rng.uniform(0.1, 0.3), np.float32)
        pattern = rng.uniform(lo, hi, size=input_shape).astype(np.float32)
    return Trigger("stamp", mask=mask, pattern=pattern)


def jumbo_data(x: torch.Tensor, y: torch.Tensor, classes: int, value_range: tuple[float, float],
               seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The budget plus poisoned copies: an all-to-one or a one-to-one mapping to a random target,
    a random share (10-30%) of the budget stamped (for one-to-one: the source class's rows)."""
    rng = np.random.default_rng(seed)
    trigger = jumbo_trigger(rng, tuple(x.shape[1:]), value_range)
    target = int(rng.integers(classes))
    if rng.random() < 0.5:
        rows = torch.from_numpy(rng.permutation(len(x))[: max(2, int(rng.uniform(0.1, 0.3) * len(x)))])
    else:
        source = int((target + 1 + rng.integers(classes - 1)) % classes)
        rows = torch.nonzero(y == source)[:, 0]
    return torch.cat([x, trigger.apply(x[rows])]), torch.cat([y, torch.full((len(rows),), target, dtype=y.dtype)])


@register_tool("mntd", roles=("detect",), families=("vision",), needs=("continuous_inputs",),
               audit_share=0.0)  # scored by the game (a part of combine_stouffer)
class MNTD:

    def __init__(self, seed: int = 0, shadows: int = 64, queries: int = 10, steps: int = 300,
                 min_shadow_auroc: float = 0.75):
        self.seed, self.shadows, self.queries, self.steps = seed, shadows, queries, steps
        self.min_shadow_auroc = min_shadow_auroc

    def audit(self, subject: Subject) -> Verdict:
        meta, build_cpu_s = self.meta_classifier(subject)
        evidence: dict[str, Any] = {"shadow_auroc": round(meta["shadow_auroc"], 4), "calibrated": False,
                                    "shadow_build_cpu_s": round(build_cpu_s, 3)}
        if meta["shadow_auroc"] < self.min_shadow_auroc:
            evidence["inconclusive"] = (f"the meta-classifier tells its own held-out shadows apart with AUROC "
                                        f"{meta['shadow_auroc']:.2f} only: shadows trained on this budget are no basis")
            return Verdict(p_planted=0.5, evidence=evidence)
        score = float(self._score(subject.model, meta)[0])
        evidence["score"] = round(score, 4)
        return Verdict(p_planted=float(1.0 / (1.0 + np.exp(-np.clip(score, -30, 30)))), evidence=evidence)

    def meta_classifier(self, subject: Subject) -> tuple[dict[str, Any], float]:
        """The fitted queries and linear layer (cached beside the shadows), its AUROC on held-out
        shadows, and the CPU seconds spent building shadows and meta-classifier now."""
        x, y, value_range, classes = subject.clean_x, subject.clean_y, subject.value_range, subject.num_classes

        def train_one(i: int, model: nn.Module) -> nn.Module:
            data = (x, y) if i % 2 == 0 else jumbo_data(x, y, classes, value_range, seed=10_000 + i)
            return train_shadow(model, *data, value_range, seed=i)

        key = hashlib.sha256(json.dumps([self.queries, self.steps, self.seed]).encode()).hexdigest()[:12]
        path = shadow_folder(subject, self.shadows, JUMBO) / f"mntd-{key}.json"
        if not path.is_file():  # fitted before: the shadows need not even be read
            shadows = shadow_set(subject, JUMBO, self.shadows, train_one)
            with FileLock(str(path) + ".lock"):
                if not path.is_file():
                    start = time.process_time()
                    labels = np.arange(len(shadows.models)) % 2  # odd shadows carry a trigger
                    half = len(labels) // 2
                    held = self._fit(shadows.models[:half], labels[:half], subject)
                    scores = self._score(shadows.models[half:], held)
                    fitted = self._fit(shadows.models, labels, subject)
                    fitted["shadow_auroc"] = auroc_score(labels[half:], scores)
                    fitted["cpu_s"] = time.process_time() - start
                    atomic_write_text(path, json.dumps(fitted))
                    return fitted, shadows.build_cpu_s + fitted["cpu_s"]
        return json.loads(path.read_text()), 0.0

    def _fit(self, models: list[nn.Module], labels: np.ndarray, subject: Subject) -> dict[str, Any]:
        """Queries and a linear layer on the models' softmax outputs, fitted jointly (Adam, full
        batch, a little weight decay), the models' weights fixed."""
        lo, hi = subject.value_range
        generator = torch.Generator().manual_seed(self.seed)
        queries = (lo + (hi - lo) * torch.rand((self.queries, *subject.input_shape), generator=generator)).requires_grad_()
        weight = torch.zeros(self.queries * subject.num_classes, requires_grad=True)
        bias = torch.zeros(1, requires_grad=True)
        target = torch.as_tensor(labels, dtype=torch.float32)
        optimiser = torch.optim.Adam([queries, weight, bias], lr=0.05)
        with torch.enable_grad():
            for _ in range(self.steps):
                outputs = torch.stack([F.softmax(model(queries), dim=1).flatten() for model in models])
                loss = F.binary_cross_entropy_with_logits(outputs @ weight + bias, target) + 1e-3 * weight.square().sum()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                with torch.no_grad():
                    queries.clamp_(lo, hi)
        return {"queries": queries.detach().tolist(), "weight": weight.detach().tolist(), "bias": float(bias.detach())}

    @staticmethod
    def _score(models: list[nn.Module] | nn.Module, fitted: dict[str, Any]) -> np.ndarray:
        """The meta-classifier's score of each model."""
        queries, weight = torch.as_tensor(fitted["queries"]), torch.as_tensor(fitted["weight"])
        with torch.no_grad():
            return np.array([float(F.softmax(model(queries), dim=1).flatten() @ weight + fitted["bias"])
                             for model in (models if isinstance(models, list) else [models])])
