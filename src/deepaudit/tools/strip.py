"""STRIP (Gao et al., ACSAC 2019): superimpose an input on random trusted inputs; a triggered
input keeps its (target) prediction whatever it is blended with, so its prediction entropy
stays low. Score: minus the mean entropy over the blends."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from deepaudit.subject import Subject


class Strip:
    name: ClassVar[str] = "strip"

    def __init__(self, seed: int = 0, overlays: int = 16, alpha: float = 0.5):
        self.seed, self.overlays, self.alpha = seed, overlays, alpha

    def fit(self, subject: Subject) -> "Strip":
        self.subject = subject
        return self

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> np.ndarray:
        pool = self.subject.clean_x
        gen = torch.Generator().manual_seed(self.seed)
        picks = pool[torch.randint(len(pool), (self.overlays,), generator=gen)]
        blended = (1 - self.alpha) * x.unsqueeze(1) + self.alpha * picks.unsqueeze(0)  # (N, O, ...)
        probs = torch.softmax(self.subject.predict(blended.flatten(0, 1)), dim=1)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(1).view(len(x), -1).mean(1)
        return (-entropy).numpy()
