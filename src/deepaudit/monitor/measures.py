"""The monitor's built-in measures of a model in training. Each reads the model (and its
gradients) without changing it, draws no random numbers, and returns plain floats."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.linear_model import RidgeClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn


def layers_with_parameters(model: nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """Module name -> its own (not its children's) parameters, for modules that have any."""
    out = {}
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        if params:
            out[name or "model"] = params
    return out


def _norm(tensors: Sequence[torch.Tensor]) -> float:
    return float(torch.sqrt(sum((t.detach().float().pow(2).sum() for t in tensors), torch.zeros(()))))


@torch.no_grad()
def weight_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of each layer's parameters, and of all of them (``total``)."""
    layers = layers_with_parameters(model)
    out = {name: _norm(params) for name, params in layers.items()}
    out["total"] = _norm([p for params in layers.values() for p in params])
    return out


@torch.no_grad()
def grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of each layer's current gradients (layers without gradients are left out)."""
    out = {}
    for name, params in layers_with_parameters(model).items():
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            out[name] = _norm(grads)
    return out


@torch.no_grad()
def snapshot(model: nn.Module) -> dict[str, list[torch.Tensor]]:
    """A copy of each layer's parameters, for ``update_sizes`` at the next record."""
    return {name: [p.detach().clone() for p in params] for name, params in layers_with_parameters(model).items()}


@torch.no_grad()
def update_sizes(before: dict[str, list[torch.Tensor]], model: nn.Module) -> dict[str, float]:
    """Relative size of each layer's change since ``before``: ||w - w_before|| / ||w_before||."""
    out = {}
    for name, params in layers_with_parameters(model).items():
        if name in before:
            change = _norm([p - q for p, q in zip(params, before[name])])
            out[name] = change / (_norm(before[name]) + 1e-12)
    return out


def effective_rank(features: torch.Tensor) -> float:
    """Roy and Vetterli's effective rank of a (samples x units) matrix: exp of the entropy of its
    normalised singular values (1 for a rank-one matrix, the width for a white one)."""
    flat = features.detach().float().reshape(len(features), -1)
    s = torch.linalg.svdvals(flat - flat.mean(0))
    if float(s.sum()) <= 0:
        return 0.0
    q = s / s.sum()
    q = q[q > 0]
    return float(torch.exp(-(q * q.log()).sum()))


def activation_stats(features: torch.Tensor) -> dict[str, float]:
    """Mean, standard deviation, share of exact zeros (dead ReLUs) and effective rank."""
    flat = features.detach().float().reshape(len(features), -1)
    return {"mean": float(flat.mean()), "std": float(flat.std()), "zero_frac": float((flat == 0).float().mean()),
            "rank": effective_rank(flat)}


def probe_accuracy(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Held-out accuracy of a linear probe for a concept: a ridge classifier on standardised
    activations (closed form: fast, deterministic, no convergence to wait for), fitted on the
    even rows and scored on the odd ones."""
    x = features.detach().float().reshape(len(features), -1).numpy()
    y = labels.detach().cpu().numpy()
    if len(np.unique(y[0::2])) < 2:
        return float(np.mean(y[1::2] == y[0]))
    probe = make_pipeline(StandardScaler(), RidgeClassifier(alpha=1.0)).fit(x[0::2], y[0::2])
    return float(probe.score(x[1::2], y[1::2]))
