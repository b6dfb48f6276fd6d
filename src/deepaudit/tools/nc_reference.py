"""Neural Cleanse judged against clean shadows: Neural Cleanse (Wang et al., S&P 2019) finds each
class's smallest working trigger mask; instead of its MAD rule, which compares a class with the
model's other classes and is fooled by classes that are easy to reach in every model (MNIST-1D's
class 8), each class's mask size relative to the model's median class is compared with the same
class's in clean shadow models the auditor trained itself (``deepaudit.tools.shadow``; reference
calibration). P(planted) is one minus the Bonferroni p-value of the class whose mask is smallest
against its shadows. Shadows that fall more than ``max_gap`` short of the model's accuracy on
unseen trusted inputs are no reference (on MNIST-1D, 128 training inputs give 25% against the
zoo's 70-93%): the answer is then inconclusive (P 0.5, p-value 1), and says why."""

from __future__ import annotations

import numpy as np
import torch

from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict
from deepaudit.tools.neural_cleanse import NeuralCleanse, size_to
from deepaudit.tools.registry import register_tool
from deepaudit.tools.shadow import accuracy, measured_half, reference
from deepaudit.triggers import Trigger


def relative_mask_sizes(masks: torch.Tensor) -> np.ndarray:
    """Log L1 norm of each class's mask minus the median over classes: scale-free, so a model
    that needs larger masks everywhere is not judged by its scale."""
    log = np.log(masks.flatten(1).sum(1).numpy() + 1e-6)
    out: np.ndarray = log - np.median(log)
    return out


@register_tool("nc_reference", roles=("detect",), families=("vision",), needs=("continuous_inputs",),
               audit_share=0.0, sizing=size_to)  # scored by the game (a part of combine_stouffer)
class NCReference:

    def __init__(self, seed: int = 0, steps: int = 300, shadows: int = 12, max_gap: float = 0.1):
        self.seed, self.steps, self.shadows, self.max_gap = seed, steps, shadows, max_gap

    def audit(self, subject: Subject) -> Verdict:
        half = measured_half(subject)
        fit = reference(subject, "accuracy", {}, accuracy, accuracy(half), self.shadows)
        gap = float(fit.value[0] - fit.shadows.mean())
        if gap > self.max_gap:
            return Verdict(p_planted=0.5, evidence={
                "p_value": 1.0, "inconclusive": f"the clean shadows reach {fit.shadows.mean():.0%} accuracy on unseen "
                f"trusted inputs against the model's {fit.value[0]:.0%}: too weak to be a reference",
                "shadow_build_cpu_s": round(fit.build_cpu_s, 3)})
        cleanse = NeuralCleanse(seed=self.seed, steps=self.steps)
        masks, patterns = cleanse.reverse_engineer(half)
        found = reference(subject, "neural_cleanse", {"steps": self.steps, "seed": self.seed},
                          lambda shadow: relative_mask_sizes(cleanse.reverse_engineer(shadow)[0]),
                          relative_mask_sizes(masks), self.shadows)
        p_value, target = found.p_value(low=True)
        trigger = Trigger("stamp", mask=masks[target].numpy(), pattern=patterns[target].numpy())
        return Verdict(p_planted=1.0 - p_value, target=target, trigger=trigger,
                       evidence={"p_value": p_value, "z": np.round(found.z_scores(), 3).tolist(),
                                 "accuracy_gap": round(gap, 4),
                                 "shadow_build_cpu_s": round(fit.build_cpu_s + found.build_cpu_s, 3)})
