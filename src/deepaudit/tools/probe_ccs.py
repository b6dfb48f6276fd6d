"""Contrast-Consistent Search (Burns et al. 2022, "Discovering Latent Knowledge in Language
Models Without Supervision"): a linear probe p on contrast pairs trained, without labels, so
that p(true completion) ~ 1 - p(false completion) (consistency) while avoiding p = 0.5
everywhere (confidence). The loss is non-convex, so it restarts from several random
initialisations and keeps the lowest loss; the labels only fix the sign."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from deepaudit.tools.base import orient_sign
from deepaudit.tools.registry import register_tool


@register_tool("probe_ccs", roles=("probe",), families=("lm",))
class CCSProbe:
    pairs: ClassVar[bool] = True

    def __init__(self, seed: int = 0, restarts: int = 10, epochs: int = 1000, lr: float = 1e-2,
                 weight_decay: float = 1e-2):
        self.seed, self.restarts, self.epochs, self.lr, self.weight_decay = seed, restarts, epochs, lr, weight_decay

    def _normalise(self, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        pos = (x[:, 0] - self.mean[0]) / self.std[0]
        neg = (x[:, 1] - self.mean[1]) / self.std[1]
        return torch.as_tensor(pos, dtype=torch.float32), torch.as_tensor(neg, dtype=torch.float32)

    @staticmethod
    def _loss(p_pos: torch.Tensor, p_neg: torch.Tensor) -> torch.Tensor:
        consistency = (p_pos - (1 - p_neg)) ** 2
        confidence = torch.minimum(p_pos, p_neg) ** 2
        return (consistency + confidence).mean()

    def _train(self, pos: torch.Tensor, neg: torch.Tensor,
               generator: torch.Generator) -> tuple[float, torch.Tensor, torch.Tensor]:
        d = pos.shape[1]
        w = (torch.randn(d, generator=generator) / d**0.5).requires_grad_()
        b = torch.zeros(1, requires_grad=True)
        opt = torch.optim.AdamW([w, b], lr=self.lr, weight_decay=self.weight_decay)
        for _ in range(self.epochs):
            opt.zero_grad()
            loss = self._loss(torch.sigmoid(pos @ w + b), torch.sigmoid(neg @ w + b))
            loss.backward()
            opt.step()
        with torch.no_grad():
            final = float(self._loss(torch.sigmoid(pos @ w + b), torch.sigmoid(neg @ w + b)))
        return final, w.detach(), b.detach()

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> CCSProbe:
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        pos, neg = self._normalise(x)
        generator = torch.Generator().manual_seed(self.seed)
        runs = [self._train(pos, neg, generator) for _ in range(self.restarts)]
        self.loss, self.w, self.b = min(runs, key=lambda run: run[0])
        self.sign = 1.0
        self.sign = orient_sign(self.score(x), y)
        self.direction = self.sign * self.w.numpy() / self.std[0]
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        pos, neg = self._normalise(x)
        with torch.no_grad():
            p = 0.5 * (torch.sigmoid(pos @ self.w + self.b) + 1 - torch.sigmoid(neg @ self.w + self.b))
        return self.sign * (p.numpy() - 0.5)
