"""Fourier analysis of models of modular arithmetic (Nanda et al. 2023): the Fourier basis over
Z_p, the frequency content of an embedding, its key frequencies, and the logit components
cos(w(a+b)) and sin(w(a+b)) that the restricted and excluded losses keep or remove."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def fourier_basis(p: int) -> torch.Tensor:
    """Orthonormal rows over Z_p: the constant, then cos and sin of frequency k for k = 1..p//2."""
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
    basis = torch.stack(rows)
    return (basis / basis.norm(dim=1, keepdim=True)).float()


def frequency_norms(weights: torch.Tensor) -> np.ndarray:
    """Norm of the frequency-k part (cos and sin together) of a (p x width) matrix whose rows
    are indexed by a residue, for k = 1..p//2 (index k-1)."""
    p = weights.shape[0]
    coeffs = fourier_basis(p) @ weights.detach().float()
    energy = coeffs[1:].pow(2).sum(1)
    pairs = energy[: 2 * (p // 2)].reshape(-1, 2).sum(1)
    return pairs.sqrt().numpy().astype(float)


def key_frequencies(norms: np.ndarray, max_keys: int | None = None) -> list[int]:
    """The key frequencies: the strongest ones, cut at the largest ratio between consecutive
    sorted norms (the elbow), among the top half. Frequencies are 1-based."""
    order = np.argsort(-norms)
    ranked = norms[order] + 1e-12
    limit = max(1, min(len(ranked) // 2, max_keys or len(ranked)))
    ratios = ranked[:limit] / ranked[1 : limit + 1]
    n = int(np.argmax(ratios)) + 1
    return sorted(int(k) + 1 for k in order[:n])


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, near 1 when one dominates."""
    v = np.sort(np.abs(np.asarray(values, dtype=float)))
    if v.sum() <= 0:
        return 0.0
    n = len(v)
    return float((2 * np.arange(1, n + 1) - n - 1) @ v / (n * v.sum()))


def all_pairs(p: int) -> torch.Tensor:
    """Every (a, b) with the ``=`` token (id p), row a*p + b: the model's p^2 inputs."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    return torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p)], 1)


def sum_directions(p: int, frequencies: list[int]) -> torch.Tensor:
    """Unit vectors over the p^2 inputs: cos(w(a+b)) and sin(w(a+b)) for each frequency, with
    w = 2 pi k / p (2 per frequency, rows)."""
    pairs = all_pairs(p)
    s = (pairs[:, 0] + pairs[:, 1]).double()
    rows = []
    for k in frequencies:
        w = 2 * math.pi * k / p
        rows += [torch.cos(w * s), torch.sin(w * s)]
    if not rows:
        return torch.zeros(0, p * p)
    d = torch.stack(rows)
    return (d / d.norm(dim=1, keepdim=True)).float()


def key_component(logits: torch.Tensor, p: int, frequencies: list[int]) -> torch.Tensor:
    """The part of (p^2 x p) logits (rows a*p + b, centred per row) that lies along
    cos(w(a+b)) and sin(w(a+b)) for the given frequencies."""
    centred = logits - logits.mean(1, keepdim=True)
    d = sum_directions(p, frequencies)
    return d.T @ (d @ centred)


def restricted_and_excluded_loss(logits: torch.Tensor, p: int, frequencies: list[int],
                                 train_rows: torch.Tensor) -> tuple[float, float]:
    """Nanda et al.'s restricted loss (on all p^2 inputs, logits kept only along the key
    frequencies) and excluded loss (on the training inputs, key-frequency part removed)."""
    labels = (all_pairs(p)[:, 0] + all_pairs(p)[:, 1]) % p
    part = key_component(logits, p, frequencies)
    restricted = F.cross_entropy(part, labels)
    centred = logits - logits.mean(1, keepdim=True)
    excluded = F.cross_entropy((centred - part)[train_rows], labels[train_rows])
    return float(restricted), float(excluded)
