"""Reference shadow models: small clean models of the audited model's architecture that the
auditor trains itself, on half of its own trusted budget, so that a statistic of the audited model
can be judged against the same statistic of models known to be clean, class by class (reference
calibration; the shadow models of MNTD, Xu et al., S&P 2021, used here as a null distribution).

Nothing here reads a zoo label or the zoo's training recipe: a shadow knows the public card (the
architecture) and the budget. Shadow ``i`` trains on a random half of the budget (drawn with seed
``i``) and is measured on the other half; the audited model is measured on one fixed half of the
same size (``measured_half``), so both see as many unseen inputs. Shadows and their statistics are
cached on disk per (architecture, budget) under ``$DEEPAUDIT_HOME/cache/shadows``, built once
under a file lock (parallel game workers wait rather than build twice), with their build cost kept
beside them and reported apart from the per-organism cost."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from filelock import FileLock
from scipy.stats import norm
from torch import nn

from deepaudit.paths import atomic_write_text, home
from deepaudit.subject import Subject, card_builder
from deepaudit.weights import load_state_dict, save_weights

RECIPE = {"version": 1, "steps": 400, "batch_size": 32, "lr": 2e-3, "weight_decay": 1e-4, "noise": 0.05}
CARD_FIELDS = ("arch", "arch_kwargs", "input_shape", "num_classes", "value_range", "feature_layer")


@dataclass(frozen=True)
class Reference:
    """A statistic of the audited model beside the same statistic of each shadow, and the
    one-off CPU seconds the shadows and their statistics took (zero when read from the cache)."""

    value: np.ndarray  # (K,) per class, or (1,) for a model-level statistic
    shadows: np.ndarray  # (S, K)
    build_cpu_s: float

    def z_scores(self) -> np.ndarray:
        """How many shadow standard deviations each class of the audited model lies above the
        shadows' mean; each class's spread is floored at the median spread over classes, so
        that a class on which the few shadows happen to agree cannot make any value extreme."""
        mean, spread = self.shadows.mean(0), self.shadows.std(0, ddof=1)
        spread = np.maximum(spread, np.median(spread)) + 1e-12
        z: np.ndarray = (self.value - mean) / spread
        return z

    def p_value(self, low: bool) -> tuple[float, int]:
        """The model-level p-value that no class is extreme (Bonferroni over classes; Gaussian
        tails of the shadows' distribution), and the most extreme class. ``low``: small values
        are the anomalous side (a small trigger mask), else large ones."""
        z = self.z_scores()
        tail = norm.cdf(z) if low else norm.sf(z)
        worst = int(np.argmin(tail))
        return float(min(1.0, tail[worst] * len(tail))), worst


def measured_half(subject: Subject) -> Subject:
    """The subject on the fixed half of its budget that statistics of the audited model are
    measured on (the same model and counters: forward passes are still charged to it)."""
    index = _half(len(subject.clean_x), seed=-1)[1]
    return _on(subject, subject.model, index)


def reference(subject: Subject, name: str, params: dict[str, Any], statistic: Callable[[Subject], np.ndarray],
              value: np.ndarray, count: int = 12) -> Reference:
    """``value``, the statistic of the audited model (measured on ``measured_half(subject)``),
    beside ``statistic`` of each of ``count`` shadows, each on its own unseen half.

    The shadows' values are cached under (shadow set, ``name``, ``params``): a tool must put in
    ``params`` everything that changes its statistic."""
    folder = shadow_folder(subject, count)
    key = hashlib.sha256(json.dumps({"name": name, "params": params}, sort_keys=True, default=repr).encode())
    path = folder / f"stat-{name}-{key.hexdigest()[:12]}.json"
    build_cpu_s = 0.0
    with FileLock(str(folder) + ".lock"):
        if not path.is_file():
            start = time.process_time()
            models = _shadow_models(subject, folder, count)
            values = [np.asarray(statistic(_on(subject, model, _half(len(subject.clean_x), i)[1])), dtype=float)
                      for i, model in enumerate(models)]
            build_cpu_s = time.process_time() - start
            atomic_write_text(path, json.dumps({"values": [v.tolist() for v in values], "cpu_s": build_cpu_s}))
        shadows = np.array(json.loads(path.read_text())["values"], dtype=float)
    value = np.asarray(value, dtype=float)
    if value.shape != shadows.shape[1:]:
        raise ValueError(f"statistic {name!r} has shape {value.shape} on the model but {shadows.shape[1:]} on its shadows")
    return Reference(value, shadows, build_cpu_s)


def accuracy(subject: Subject) -> np.ndarray:
    """The subject's accuracy on its clean budget, as (1,): a shadow set is a fair reference only
    if its models reach about the audited model's accuracy on unseen trusted inputs."""
    return np.array([float((subject.predict(subject.clean_x).argmax(1) == subject.clean_y).float().mean())])


def shadow_cost(subject: Subject, count: int = 12) -> float:
    """CPU seconds it took to train the shadows of this architecture and budget (0 if not built)."""
    meta = shadow_folder(subject, count) / "meta.json"
    return float(json.loads(meta.read_text())["cpu_s"]) if meta.is_file() else 0.0


def train_shadow(model: nn.Module, x: torch.Tensor, y: torch.Tensor, value_range: tuple[float, float],
                 seed: int) -> nn.Module:
    """Minibatch AdamW on (x, y) with a little input noise (the budget is small), ``RECIPE``'s
    steps whatever the budget's size. The auditor's own loop: it knows nothing of the zoo's."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    noise = RECIPE["noise"] * (value_range[1] - value_range[0])
    model.train()
    for _ in range(int(RECIPE["steps"])):
        idx = torch.randint(len(x), (int(RECIPE["batch_size"]),), generator=generator)
        batch = x[idx] + noise * torch.randn(x[idx].shape, generator=generator)
        loss = F.cross_entropy(model(batch), y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def _half(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random split of ``range(n)`` into a training half and a measuring half (seed -1: the
    audited model's fixed measuring half)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed % 2**31))
    cut = max(1, n // 2)
    return order[:cut], order[cut:] if n > 1 else order


def _on(subject: Subject, model: nn.Module, index: torch.Tensor) -> Subject:
    """``model`` with the budget rows ``index``. For the audited model itself, a shallow copy that
    shares its cost meter and findings (a new Subject would hook a second meter onto the model)."""
    if model is subject.model:
        view = copy.copy(subject)
        view.clean_x, view.clean_y = subject.clean_x[index], subject.clean_y[index]
        return view
    return Subject(model=model, card=subject.card, clean_x=subject.clean_x[index], clean_y=subject.clean_y[index])


def shadow_folder(subject: Subject, count: int, kind: dict[str, Any] | None = None) -> Path:
    """The cache folder of this (architecture, budget, recipe, count, and the set's own ``kind``)."""
    digest = hashlib.sha256()
    key = {k: subject.card.get(k) for k in CARD_FIELDS} | {"recipe": RECIPE, "count": count} | (
        {"kind": kind} if kind else {})
    digest.update(json.dumps(key, sort_keys=True).encode())
    digest.update(subject.clean_x.numpy().tobytes())
    digest.update(subject.clean_y.numpy().tobytes())
    folder = home() / "cache" / "shadows" / digest.hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _shadow_models(subject: Subject, folder: Path, count: int) -> list[nn.Module]:
    """The ``count`` clean shadows, each trained on its random half of the budget."""
    def train_one(i: int, model: nn.Module) -> nn.Module:
        train_index = _half(len(subject.clean_x), i)[0]
        return train_shadow(model, subject.clean_x[train_index], subject.clean_y[train_index], subject.value_range, seed=i)
    return _trained(subject, folder, count, train_one)


@dataclass(frozen=True)
class ShadowSet:
    """Shadows read or trained now, their cache folder (for what is fitted on them), and the CPU
    seconds building them took now (zero when read from the cache)."""

    models: list[nn.Module]
    folder: Path
    build_cpu_s: float


def shadow_set(subject: Subject, kind: dict[str, Any], count: int,
               train_one: Callable[[int, nn.Module], nn.Module]) -> ShadowSet:
    """A set of ``count`` shadows of the card's architecture made by ``train_one(i, fresh model)``
    (e.g. MNTD's shadows with triggers of the auditor's own), cached under the set's ``kind``
    (which must name everything that changes them) like the clean shadows."""
    folder = shadow_folder(subject, count, kind)
    with FileLock(str(folder) + ".lock"):
        cached = (folder / "meta.json").is_file()
        start = time.process_time()
        models = _trained(subject, folder, count, train_one)
        return ShadowSet(models, folder, 0.0 if cached else time.process_time() - start)


def _trained(subject: Subject, folder: Path, count: int,
             train_one: Callable[[int, nn.Module], nn.Module]) -> list[nn.Module]:
    """The ``count`` shadows, read from ``folder`` or trained there (the caller holds its lock)."""
    build = card_builder(subject.card)
    meta = folder / "meta.json"
    if not meta.is_file():
        start = time.process_time()
        with torch.enable_grad(), torch.random.fork_rng(devices=[]):  # seeded per shadow, the caller's RNG untouched
            for i in range(count):
                torch.manual_seed(i)
                save_weights(train_one(i, build()), folder / f"shadow-{i}.safetensors")
        atomic_write_text(meta, json.dumps({"count": count, "recipe": RECIPE, "cpu_s": time.process_time() - start}))
    models = []
    for i in range(count):
        model = build()
        model.load_state_dict(load_state_dict(folder / f"shadow-{i}.safetensors"))
        models.append(model.eval())
    return models
