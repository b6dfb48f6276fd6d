"""Reverse-engineer a modular-addition model into a program with no neural network in it.

Nanda et al. 2023 found that a grokked one-layer transformer computes (a + b) mod p by
logits(c) ~ sum over a few key frequencies w of cos(w(a + b - c)). This tool fits the amplitude
and phase of that term for every frequency from the model's logits on all p^2 inputs (least
squares, a projection since the terms are orthogonal), keeps the frequencies above the elbow
of the sorted amplitudes, and refits the program on them alone. The program is plain numpy:
trigonometry and an argmax."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from deepaudit.internals.fourier import all_pairs, key_frequencies
from deepaudit.tools.registry import register_tool


@dataclass(frozen=True)
class FourierProgram:
    """logits(a, b)[c] = sum_k amp_k * cos(2 pi k (a + b - c) / p - phase_k); answer = argmax."""

    p: int
    frequencies: tuple[int, ...]
    amplitudes: tuple[float, ...]
    phases: tuple[float, ...]

    def logits(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        s = (np.asarray(a)[:, None] + np.asarray(b)[:, None] - np.arange(self.p)[None, :]).astype(float)
        out = np.zeros_like(s)
        for k, amp, phase in zip(self.frequencies, self.amplitudes, self.phases):
            out += amp * np.cos(2 * math.pi * k * s / self.p - phase)
        return out

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.logits(a, b).argmax(1)

    def to_json(self) -> dict[str, Any]:
        return {"p": self.p, "frequencies": list(self.frequencies), "amplitudes": list(self.amplitudes),
                "phases": list(self.phases)}


def fit_program(logits: np.ndarray, p: int, frequencies: list[int]) -> FourierProgram:
    """Least-squares amplitude and phase of cos(w(a+b-c)) for each frequency, from (p^2 x p)
    logits with rows a*p + b."""
    pairs = all_pairs(p).numpy()
    s = (pairs[:, 0:1] + pairs[:, 1:2] - np.arange(p)[None, :]).astype(float)
    centred = logits - logits.mean(1, keepdims=True)
    amps, phases = [], []
    for k in frequencies:
        cos, sin = np.cos(2 * math.pi * k * s / p), np.sin(2 * math.pi * k * s / p)
        alpha = float((centred * cos).sum() / (cos * cos).sum())
        beta = float((centred * sin).sum() / (sin * sin).sum())
        amps.append(math.hypot(alpha, beta))
        phases.append(math.atan2(beta, alpha))
    return FourierProgram(p, tuple(frequencies), tuple(amps), tuple(phases))


@register_tool("fourier_program", roles=("reverse",), families=("training",))
class FourierReverseEngineer:
    """Key frequencies from the model's logits on all p^2 inputs: the amplitude of each
    frequency's cos(w(a+b-c)) term, cut at the elbow of the sorted amplitudes."""


    def __init__(self, seed: int = 0, max_frequencies: int | None = None):
        self.max_frequencies = max_frequencies

    @torch.no_grad()
    def reverse(self, model: nn.Module, card: dict[str, Any]) -> FourierProgram:
        p = int(card["modulus"])
        logits = model(all_pairs(p)).double().numpy()
        everything = fit_program(logits, p, list(range(1, p // 2 + 1)))
        keys = key_frequencies(np.asarray(everything.amplitudes), self.max_frequencies)
        return fit_program(logits, p, keys)
