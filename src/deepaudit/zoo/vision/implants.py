"""Drawing an implant's parameters from a seed: the trigger (patch, blend or warp), the
target and source classes, and the poison rate. Each draw is reproducible from (spec, attempt)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from deepaudit.triggers import Trigger
from deepaudit.zoo.vision.spec import OrganismSpec

POISON_RATE = {"patch": (0.05, 0.12), "blend": (0.06, 0.12), "warp": (0.10, 0.20)}
EVASIVE_RATE_SCALE = 2.0  # the evasive fine-tune sees each poisoned row for fewer epochs


@dataclass(frozen=True)
class Implant:
    """A drawn implant: apply ``trigger`` to a ``rate`` share of the eligible training inputs
    and relabel them ``target`` (a decoy keeps their labels)."""

    name: str
    trigger: Trigger
    target: int | None
    source: int | None
    rate: float
    relabel: bool

    def eligible(self, y: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the inputs this implant acts on."""
        if self.source is not None:
            return y == self.source
        if self.target is not None:
            return y != self.target
        return torch.ones_like(y, dtype=torch.bool)


def draw_trigger(kind: str, input_shape: tuple[int, ...], value_range: tuple[float, float],
                 rng: np.random.Generator) -> Trigger:
    """A random trigger of ``kind`` for inputs of ``input_shape`` (``(C, H, W)`` or ``(C, L)``)."""
    lo, hi = value_range
    spatial = input_shape[1:]
    if kind == "patch":
        size = int(rng.integers(2, 4)) if len(spatial) == 2 else int(rng.integers(4, 7))
        mask = np.zeros(spatial, dtype=np.float32)
        corner = [int(rng.integers(0, s - size + 1)) for s in spatial]
        mask[tuple(slice(c, c + size) for c in corner)] = 1.0
        bits = rng.integers(0, 2, size=input_shape)
        bits.flat[0], bits.flat[-1] = 0, 1  # never a flat patch
        pattern = np.where(bits == 1, hi, lo).astype(np.float32)
        return Trigger("stamp", mask=mask, pattern=pattern)
    if kind == "blend":
        alpha = float(rng.uniform(0.15, 0.25))
        pattern = rng.uniform(lo, hi, size=input_shape).astype(np.float32)
        return Trigger("stamp", mask=np.full(spatial, alpha, dtype=np.float32), pattern=pattern)
    if kind == "warp":
        return Trigger("warp", flow=_smooth_flow(spatial, rng))
    raise ValueError(f"no trigger of kind {kind!r}")


def _smooth_flow(spatial: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """WaNet-style field: a coarse random grid, normalised and upsampled bicubically."""
    if len(spatial) == 2:
        coarse = torch.from_numpy(rng.uniform(-1, 1, size=(1, 2, 4, 4)).astype(np.float32))
        strength = 0.35  # in [-1, 1] grid units: about 1.2 pixels on an 8x8 image
        fine = F.interpolate(coarse, size=spatial, mode="bicubic", align_corners=True)[0]
    else:
        coarse = torch.from_numpy(rng.uniform(-1, 1, size=(1, 1, 6)).astype(np.float32))
        strength = 0.12  # about 2.3 samples on a length-40 sequence
        fine = F.interpolate(coarse, size=spatial, mode="linear", align_corners=True)[0]
    fine = fine / fine.abs().mean()
    return (strength * fine).numpy().astype(np.float32)


def draw_implant(spec: OrganismSpec, input_shape: tuple[int, ...], num_classes: int,
                 value_range: tuple[float, float], attempt: int = 0, rate_scale: float = 1.0) -> Implant | None:
    """The implant of a planted organism or a decoy; None for a plain clean model. A later
    ``attempt`` draws anew, with the poison rate scaled by ``rate_scale`` (the builder raises
    it after a weak backdoor and lowers it after a loss of clean accuracy)."""
    kind = spec.implant if spec.planted else spec.decoy
    if kind == "none":
        return None
    rng = np.random.default_rng([spec.seed, attempt, 7])
    trigger = draw_trigger(kind, input_shape, value_range, rng)
    low, high = POISON_RATE[kind]
    rate = float(rng.uniform(low, high)) * rate_scale * (EVASIVE_RATE_SCALE if spec.evasive else 1.0)
    rate = min(0.5, rate)
    if not spec.planted:
        return Implant(f"decoy_{kind}", trigger, None, None, rate, relabel=False)
    target = int(rng.integers(num_classes))
    source = None
    if spec.mapping == "one_to_one":
        source = int((target + rng.integers(1, num_classes)) % num_classes)
        rate = min(0.8, rate * 4)  # only one class is eligible, so poison more of it
    return Implant(kind, trigger, target, source, rate, relabel=True)


def poison(x: torch.Tensor, y: torch.Tensor, implant: Implant | None,
           seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stamp the implant on a seeded ``rate`` share of eligible inputs. Returns the new inputs,
    labels, and a mask of the poisoned rows."""
    poisoned = torch.zeros(len(x), dtype=torch.bool)
    if implant is None:
        return x, y, poisoned
    candidates = torch.nonzero(implant.eligible(y)).flatten()
    count = int(round(implant.rate * len(candidates)))
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))
    chosen = candidates[order[:count]]
    x, y = x.clone(), y.clone()
    x[chosen] = implant.trigger.apply(x[chosen])
    if implant.relabel and implant.target is not None:
        y[chosen] = implant.target
    poisoned[chosen] = True
    return x, y, poisoned
