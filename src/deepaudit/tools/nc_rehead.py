"""Neural Cleanse against the model's own re-headed copy: Neural Cleanse (Wang et al., S&P 2019)
finds each class's smallest working trigger mask, once on the model and once with its output
layer refitted on the trusted budget (``deepaudit.tools.rehead``). A class that is easy to reach
in any model of the task (MNIST-1D's class 8) stays easy after the refit; a planted target does
not, because the refitted layer no longer listens to the trigger's features. The statistic is
the change of each class's relative mask size, and its anomaly index the MAD index of the class
whose mask shrank most (as in Neural Cleanse); P(planted) is one minus the index's p-value under
a null of independent Gaussian changes (simulated once per number of classes), so that it is a
calibrated p-value a combination can use, not a squashed score."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import torch

from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict, anomaly_index
from deepaudit.tools.nc_reference import relative_mask_sizes
from deepaudit.tools.neural_cleanse import MIN_STEPS, NeuralCleanse
from deepaudit.tools.registry import register_tool
from deepaudit.tools.rehead import refitted_head
from deepaudit.tools.sizing import Allowance
from deepaudit.triggers import Trigger


def size_to(allowance: Allowance) -> dict[str, int]:
    """As many steps (up to the default 300) as two Neural Cleanse runs fit."""
    return allowance.steps(2 * allowance.per_step(32), MIN_STEPS, what="steps of two searches")


NULL_DRAWS = 20_000


@cache
def _null_indices(k: int) -> np.ndarray:
    draws = np.random.default_rng(0).standard_normal((NULL_DRAWS, k))
    median = np.median(draws, axis=1, keepdims=True)
    mad = 1.4826 * np.median(np.abs(draws - median), axis=1) + 1e-12
    return np.sort((median[:, 0] - draws.min(axis=1)) / mad)


def index_p_value(index: float, k: int) -> float:
    """P(the MAD anomaly index of the smallest of ``k`` independent Gaussians >= ``index``)."""
    null = _null_indices(k)
    return float((len(null) - np.searchsorted(null, index, side="left") + 1) / (len(null) + 1))


def shift_verdict(shift: np.ndarray, masks: torch.Tensor, patterns: torch.Tensor, **evidence: Any) -> Verdict:
    """The verdict on a model whose classes' relative mask sizes moved by ``shift`` against a
    reference: the MAD anomaly index of the class that shrank most, its p-value under the null
    above, and that class's own mask and pattern as the recovered trigger."""
    index = anomaly_index(shift, low=True)
    p_value = index_p_value(index, len(shift))
    target = int(np.argmin(shift))
    trigger = Trigger("stamp", mask=masks[target].numpy(), pattern=patterns[target].numpy())
    return Verdict(p_planted=1.0 - p_value, target=target, trigger=trigger,
                   evidence={"p_value": p_value, "anomaly_index": round(index, 4),
                             "shift": np.round(shift, 4).tolist(), **evidence})


@register_tool("nc_rehead", roles=("detect",), families=("vision",), needs=("continuous_inputs",),
               audit_share=0.0, sizing=size_to)  # scored by the game (a part of combine_stouffer)
class NCRehead:

    def __init__(self, seed: int = 0, steps: int = 300):
        self.seed, self.steps = seed, steps

    def audit(self, subject: Subject) -> Verdict:
        cleanse = NeuralCleanse(seed=self.seed, steps=self.steps)
        masks, patterns = cleanse.reverse_engineer(subject)
        with refitted_head(subject.model, subject.clean_x, subject.clean_y, seed=self.seed):
            reference_masks, _ = cleanse.reverse_engineer(subject)
        return shift_verdict(relative_mask_sizes(masks) - relative_mask_sizes(reference_masks), masks, patterns)
