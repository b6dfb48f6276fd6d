"""One training loop for every organism, planted or clean, so that no detector can win by
spotting a different training path. Deterministic given the seed (single-threaded)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

StepCallback = Callable[[int, nn.Module, float], None]


@dataclass(frozen=True)
class Recipe:
    """Optimiser settings and budget for one (data set, architecture) pair."""

    epochs: int
    lr: float = 2e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    finetune_epochs: int = 15  # evasive fine-tuning (trojan and its twin alike)
    anchor_logits: float = 0.2  # evasive: weight of the logit-matching loss on clean rows
    anchor_params: float = 1e-4  # evasive: weight of the L2 pull towards the clean weights
    arch_kwargs: dict[str, Any] = field(default_factory=dict)


RECIPES = {
    ("digits", "mlp"): Recipe(epochs=40),
    ("digits", "cnn"): Recipe(epochs=30),
    ("mnist1d", "mlp"): Recipe(epochs=20, lr=1e-3, weight_decay=1e-2, arch_kwargs={"hidden": 256}),
    ("mnist1d", "cnn"): Recipe(epochs=15),
}


def recipe_for(dataset: str, arch: str, epochs: int | None = None) -> Recipe:
    base = RECIPES.get((dataset, arch), Recipe(epochs=30))
    return base if epochs is None else replace(base, epochs=epochs)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, seed: int,
          epochs: int | None = None, anchor: nn.Module | None = None,
          poisoned: torch.Tensor | None = None, on_epoch: StepCallback | None = None) -> nn.Module:
    """Minibatch AdamW on (x, y). With ``anchor`` (the evasive fine-tune), the loss also keeps
    the logits on unpoisoned rows and the weights close to the anchor model's."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    anchor_params = [p.detach().clone() for p in anchor.parameters()] if anchor is not None else []
    clean_rows = ~poisoned if poisoned is not None else torch.ones(len(x), dtype=torch.bool)
    model.train()
    for epoch in range(epochs if epochs is not None else recipe.epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            logits = model(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            if anchor is not None:
                keep = clean_rows[idx]
                with torch.no_grad():
                    reference = anchor(x[idx][keep])
                loss = loss + recipe.anchor_logits * F.mse_loss(logits[keep], reference)
                drift = sum(((p - q).pow(2).sum() for p, q in zip(model.parameters(), anchor_params)), torch.zeros(()))
                loss = loss + recipe.anchor_params * drift
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        if on_epoch is not None:
            on_epoch(epoch, model, total / len(x))
    model.eval()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of ``x`` classified as ``y``."""
    if len(x) == 0:
        return float("nan")
    return float((model(x).argmax(1) == y).float().mean())
