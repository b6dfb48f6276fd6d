"""Activation Mahalanobis (Lee et al., NeurIPS 2018): class-conditional Gaussians with one
shared covariance, shrunk with Ledoit-Wolf (scikit-learn), on a layer's activations of the
trusted budget. An input's score is its distance to the nearest class mean.

Model level: an auditor has no triggered inputs, so it makes candidates: random patches and
blended patterns stamped on held-out budget inputs. P(planted) is the largest share, over
candidates, of stamped inputs whose activations leave the clean distribution (beyond the
99th percentile of held-out clean distances): a backdoor that generalises to trigger-like
stamps pushes them off the clean manifold. (An anomaly index over candidates was tried
first and scored at chance on the standard suite: most candidates move nothing, so the MAD
is near zero and the index explodes on clean models too.)"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

from deepaudit.internals import run_with_cache
from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict
from deepaudit.tools.registry import register_tool
from deepaudit.tools.sizing import Allowance, TooLittleTime
from deepaudit.triggers import Trigger


def candidate_triggers(shape: tuple[int, ...], value_range: tuple[float, float], count: int,
                       rng: np.random.Generator) -> list[Trigger]:
    """Generic trigger guesses: small high-contrast patches anywhere, and faint blended noise."""
    lo, hi = value_range
    spatial = shape[1:]
    out = []
    for i in range(count):
        if i % 4 == 3:
            mask = np.full(spatial, 0.2, dtype=np.float32)
            pattern = rng.uniform(lo, hi, size=shape).astype(np.float32)
        else:
            size = int(rng.integers(2, 4)) if len(spatial) == 2 else int(rng.integers(4, 7))
            corner = [int(rng.integers(0, s - size + 1)) for s in spatial]
            mask = np.zeros(spatial, dtype=np.float32)
            mask[tuple(slice(c, c + size) for c in corner)] = 1.0
            pattern = np.where(rng.integers(0, 2, size=shape) == 1, hi, lo).astype(np.float32)
        out.append(Trigger("stamp", mask=mask, pattern=pattern))
    return out


def size_to(allowance: Allowance) -> dict[str, int]:
    """As many candidate stamps (up to 64) as fit, after the fit on half the inputs."""
    n, spe = allowance.inputs, allowance.seconds_per_example
    candidates = int(min(64, (allowance.seconds - n * spe) / max(n / 2 * spe, 1e-9)))
    if candidates < 8:
        raise TooLittleTime(f"needs about {n * spe * 5:.1f} s for 8 candidate stamps; {allowance.seconds:.1f} s left")
    return {"candidates": candidates}


@register_tool("mahalanobis", roles=("detect", "inputs"), families=("vision",), needs=("continuous_inputs",),
               audit_share=0.15, sizing=size_to)
class Mahalanobis:

    def __init__(self, seed: int = 0, layer: str | None = None, candidates: int = 64, quantile: float = 0.99):
        self.seed, self.layer, self.candidates, self.quantile = seed, layer, candidates, quantile

    # -- input level -------------------------------------------------------------------
    def fit(self, subject: Subject) -> Mahalanobis:
        return self._fit(subject, subject.clean_x, subject.clean_y)

    def _fit(self, subject: Subject, x: torch.Tensor, y: torch.Tensor) -> Mahalanobis:
        self.model, self._layer = subject.model, self.layer or subject.feature_layer
        feats = self._features(x)
        classes = np.unique(y.numpy())
        self.means = np.stack([feats[y.numpy() == c].mean(0) for c in classes])
        centred = feats - self.means[np.searchsorted(classes, y.numpy())]
        self.covariance = LedoitWolf(assume_centered=True).fit(centred)
        return self

    def score(self, x: torch.Tensor) -> np.ndarray:
        feats = self._features(x)
        return np.min([self.covariance.mahalanobis(feats - mu) for mu in self.means], axis=0)

    def _features(self, x: torch.Tensor) -> np.ndarray:
        _, cache = run_with_cache(self.model, x, [self._layer])
        feats = cache[self._layer].flatten(1).double().numpy()
        if not np.isfinite(feats).all():
            raise ValueError(f"non-finite activations at layer {self._layer!r}")
        return feats

    # -- model level -------------------------------------------------------------------
    def audit(self, subject: Subject) -> Verdict:
        rng = np.random.default_rng(self.seed)
        order = torch.from_numpy(rng.permutation(len(subject.clean_x)))
        half = max(1, len(order) // 2)
        fit_idx, test_idx = order[:half], order[half:] if len(order) > 1 else order
        self._fit(subject, subject.clean_x[fit_idx], subject.clean_y[fit_idx])
        x_test = subject.clean_x[test_idx]
        cutoff = float(np.quantile(self.score(x_test), self.quantile))
        triggers = candidate_triggers(subject.input_shape, subject.value_range, self.candidates, rng)
        rates = np.array([float((self.score(t.apply(x_test)) > cutoff).mean()) for t in triggers])
        return Verdict(p_planted=float(rates.max()),
                       evidence={"layer": self._layer, "max_outlier_rate": round(float(rates.max()), 4),
                                 "median_outlier_rate": round(float(np.median(rates)), 4),
                                 "worst_candidate": int(rates.argmax())})
