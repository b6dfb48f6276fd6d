"""The recipe of a grokking organism (Nanda et al. 2023, scaled down for 2 CPU cores) and the
data it learns: (a + b) mod p on a seeded share of all p^2 pairs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

import torch

from deepaudit.internals.fourier import all_pairs

BUILD_VERSION = 2  # bump when a change to the grokking builder alters what it writes (2: public training.json)


@dataclass(frozen=True)
class GrokSpec:
    """A one-layer transformer trained full-batch with AdamW (betas 0.9, 0.98) on a share
    ``train_frac`` of the p^2 sums. ``role`` names the cell: ``grok`` (the organism),
    ``no_wd`` (control: no weight decay, memorises and never generalises) or ``big_data``
    (control: 80% of the pairs, enough to generalise at once)."""

    p: int = 113
    train_frac: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 1.0
    steps: int = 10_000
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    eval_every: int = 50
    seed: int = 0
    role: str = "grok"

    def __post_init__(self) -> None:
        if self.p < 3 or any(self.p % d == 0 for d in range(2, int(self.p ** 0.5) + 1)):
            raise ValueError(f"p must be a prime >= 3, got {self.p}")
        if not 0 < self.train_frac < 1:
            raise ValueError(f"train_frac must lie in (0, 1), got {self.train_frac}")

    def digest(self) -> str:
        """A 16-hex-digit id naming the organism folder and its monitor run."""
        payload = json.dumps({**asdict(self), "build_version": BUILD_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def arch_kwargs(self) -> dict[str, int]:
        return {"d_model": self.d_model, "n_heads": self.n_heads, "d_mlp": self.d_mlp}


# Nanda et al.'s p = 113 and d_model = 128 need about 10^4 full-batch steps, too slow for 2
# shared cores. "full" keeps the optimiser (full-batch AdamW, lr 1e-3, weight decay 1.0) at
# p = 59 and half the width; at p = 59, 30% of the pairs (1,044) had not generalised in pilots
# (lr 1e-3 to 3e-3, up to 4,000 steps), so it trains on 50% (1,740 pairs), which generalised
# within 6,000 steps (see README).
PRESETS: dict[str, GrokSpec] = {
    "nanda": GrokSpec(),
    "full": GrokSpec(p=59, train_frac=0.5, steps=6000, d_model=64, d_mlp=256, eval_every=50),
    "tiny": GrokSpec(p=13, lr=1e-2, steps=150, d_model=16, n_heads=2, d_mlp=32, eval_every=25),  # tests
}
BIG_DATA_FRAC = 0.8  # the control that generalises at once (the issue asks for 60% or more)


def grok_specs(preset: str = "full", seeds: tuple[int, ...] = (0,)) -> list[GrokSpec]:
    """Per seed: the grokking organism and its two controls (no weight decay; 80% of the data)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown grokking preset {preset!r}; available: {sorted(PRESETS)}")
    base = PRESETS[preset]
    out = []
    for seed in seeds:
        organism = replace(base, seed=seed)
        out += [organism, replace(organism, weight_decay=0.0, role="no_wd"),
                replace(organism, train_frac=BIG_DATA_FRAC, role="big_data")]
    return out


def dataset(spec: GrokSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All p^2 inputs, their answers, and a boolean mask of the training pairs (seeded)."""
    x = all_pairs(spec.p)
    y = (x[:, 0] + x[:, 1]) % spec.p
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(spec.seed))
    train = torch.zeros(len(x), dtype=torch.bool)
    train[order[: int(round(spec.train_frac * len(x)))]] = True
    return x, y, train
