"""Shared plumbing for the removers and localizers: an editable copy of the subject's model
(never the original), a short training loop on the clean budget, permanent unit pruning
(``torch.nn.utils.prune``), and the (clean, triggered) pairs built from the organism's
recovered trigger (a shared finding: Neural Cleanse's, computed once per organism), since an
auditor has no triggered inputs."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from deepaudit.internals import intervene
from deepaudit.internals.ablation import Unit, zero_units
from deepaudit.subject import Subject
from deepaudit.tools.findings import shared
from deepaudit.triggers import input_trigger

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def editable_copy(subject: Subject) -> nn.Module:
    """A trainable deep copy of the subject's model. Its forward passes still count on the
    subject's meter (the meter is shared, not copied), so a remover's training is charged."""
    model = copy.deepcopy(subject.model, memo={id(subject.meter): subject.meter})
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def split_budget(subject: Subject, val_fraction: float, seed: int) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_val, y_val): the clean budget split for a tool's own validation."""
    order = torch.randperm(len(subject.clean_x), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(val_fraction * len(order)))) if len(order) > 1 else 0
    val, train = order[:n_val], order[n_val:]
    return subject.clean_x[train], subject.clean_y[train], subject.clean_x[val], subject.clean_y[val]


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, seed: int,
        batch_size: int = 64, loss_fn: LossFn = cross_entropy) -> nn.Module:
    """Minibatch Adam on (x, y) with ``loss_fn``; returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            loss = loss_fn(model, x[idx], y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean()) if len(x) else float("nan")


def producer(model: nn.Module, layer: str) -> nn.Module:
    """The linear or convolutional module whose output units feed ``layer`` (the last one
    registered before it), so that zeroing its row ``i`` silences unit ``i`` of ``layer``."""
    found = None
    for name, module in model.named_modules():
        if name == layer:
            break
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            found = module
    if found is None:
        raise ValueError(f"no linear or convolutional module precedes {layer!r}")
    return found


def prune_units(model: nn.Module, units: Iterable[Unit]) -> nn.Module:
    """Silence ``units`` by masking their producer's weight rows and biases with
    ``torch.nn.utils.prune`` (the masks hold during later fine-tuning; ``make_permanent`` ends them)."""
    by_module: dict[nn.Module, list[int]] = {}
    for layer, index in units:
        by_module.setdefault(producer(model, layer), []).append(index)
    for module, indices in by_module.items():
        for param in ("weight", "bias"):
            if getattr(module, param, None) is None:
                continue
            mask = torch.ones_like(getattr(module, param))
            mask[indices] = 0
            prune.custom_from_mask(module, param, mask)
    return model


def safe_prefix(model: nn.Module, ranked: list[Unit], x_val: torch.Tensor, y_val: torch.Tensor,
                max_drop: float) -> list[Unit]:
    """The longest prefix of ``ranked`` whose zero-ablation keeps accuracy on (x_val, y_val)
    within ``max_drop`` of the unablated model's (scanning until the first prefix that does not)."""
    base = accuracy(model, x_val, y_val)
    chosen: list[Unit] = []
    for count in range(1, len(ranked) + 1):
        with intervene(model, zero_units(ranked[:count])):
            if base - accuracy(model, x_val, y_val) > max_drop:
                break
        chosen = ranked[:count]
    return chosen


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weights (plain parameters again, loadable anywhere)."""
    for module in model.modules():
        for param in ("weight", "bias"):
            if prune.is_pruned(module) and hasattr(module, f"{param}_orig"):
                prune.remove(module, param)
    return model


@dataclass(frozen=True)
class Pairs:
    """Clean budget inputs with their labels, the same inputs under a recovered trigger, and
    the trigger's target class."""

    clean: torch.Tensor
    labels: torch.Tensor
    triggered: torch.Tensor
    target: int


def recovered_pairs(subject: Subject, n: int = 64) -> Pairs:
    """(clean, triggered) pairs from the organism's recovered trigger, for the localizers;
    inputs already of the recovered target class are left out."""
    recovered = shared(subject, "trigger")
    if recovered.trigger is None or recovered.target is None:
        raise ValueError("the recovered-trigger finding has no trigger and target to build pairs from")
    keep = subject.clean_y != recovered.target
    if not keep.any():
        keep = torch.ones_like(keep)
    clean, labels = subject.clean_x[keep][:n], subject.clean_y[keep][:n]
    return Pairs(clean, labels, input_trigger(recovered.trigger).apply(clean), int(recovered.target))


def target_logprob(logits: torch.Tensor, target: int) -> torch.Tensor:
    """Mean log-probability of the target class: the quantity the localizers explain."""
    return torch.log_softmax(logits, dim=1)[:, target].mean()


def rank(scores: dict[Unit, float]) -> list[Unit]:
    """Units by decreasing score (ties broken by layer and index, for reproducibility)."""
    return sorted(scores, key=lambda u: (-scores[u], u))


def per_unit(values: torch.Tensor) -> torch.Tensor:
    """``(N, C, *positions)`` -> ``(N, C)``: a unit's total over its positions (channels of a conv)."""
    return values.reshape(values.shape[0], values.shape[1], -1).sum(2)
