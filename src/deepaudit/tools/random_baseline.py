"""The floor every tool must beat: random answers, seeded per model so they are reproducible."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict
from deepaudit.tools.registry import register_tool
from deepaudit.triggers import Trigger


@register_tool("random", roles=("detect", "inputs"), families=("vision",), kind="baseline", audit_share=0.0)
class RandomBaseline:

    def __init__(self, seed: int = 0):
        self.seed = seed

    def _rng(self, subject: Subject) -> np.random.Generator:
        digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes()[:64] for p in subject.model.parameters()))
        return np.random.default_rng([self.seed, int.from_bytes(digest.digest()[:4], "little")])

    def audit(self, subject: Subject) -> Verdict:
        rng = self._rng(subject)
        shape = subject.input_shape
        lo, hi = subject.value_range
        mask = (rng.random(shape[1:]) < 0.1).astype(np.float32)
        pattern = rng.uniform(lo, hi, size=shape).astype(np.float32)
        return Verdict(p_planted=float(rng.random()), target=int(rng.integers(subject.num_classes)),
                       trigger=Trigger("stamp", mask=mask, pattern=pattern))

    def fit(self, subject: Subject) -> RandomBaseline:
        self.rng = self._rng(subject)
        return self

    def score(self, x: torch.Tensor) -> np.ndarray:
        return self.rng.random(len(x))
