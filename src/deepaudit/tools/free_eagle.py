"""FreeEagle (Fu et al., USENIX Security 2023), a data-free detector: the model is split at the input
of its second-to-last linear layer; for every class a dummy representation there is optimised until
the later part gives that class, and the softmax scores the other classes keep on it form a
source-by-target matrix. A backdoor's target is a class every representation leans towards (the
trigger's features push to it from anywhere), so its column's mean (the target's *tendency*) stands
out; the statistic is how far the largest tendency lies above the upper quartile, in interquartile
ranges. It needs no input at all, clean or otherwise, and no model of the trigger: the audit of a
model whose training data the auditor never saw.

As in the authors' ``backdoor_inspection_new.py``: one dummy a class, uniform in [0, 1) at the start,
Adam (learning rate 0.01, weight decay 0.005) for 1000 steps on the cross-entropy to the class,
clamped at 0 where the split's input comes out of a ReLU (checked on random inputs in the card's
value range), the quartiles at their index positions. The split is chosen the same way for every
model (the authors pick a layer per architecture; for their small CNN, between the convolutions and
the fully connected layers, which is where this one falls on the zoo's CNNs). On the standard suite
it ranks models near chance (AUROC 0.55 on draw 1, 0.58 held out), above it only on the digits CNNs
(docs/vision.md); why was not looked into."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepaudit.internals.capture import module_inputs
from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict, squash
from deepaudit.tools.registry import register_tool

STEPS, LR, WEIGHT_DECAY = 1000, 1e-2, 0.005  # the authors' optimisation of each dummy
# the statistic at P(planted) = 0.5 and the logistic's slope, fitted on the standard suite's draw 1
MIDPOINT, SLOPE = 2.59, 0.19


def split_layer(model: nn.Module) -> nn.Linear | None:
    """The second-to-last linear layer, whose input the dummies replace; None when there is none."""
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linear[-2] if len(linear) >= 2 else None


def split_inputs(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """What ``layer`` receives when ``model`` reads ``x`` (its single input, a (batch, features)
    tensor); None when it is not called once on such a tensor."""
    seen, _ = module_inputs(model, layer, x)
    return seen[0] if len(seen) == 1 and seen[0].dim() == 2 and len(seen[0]) == len(x) else None


def tendency_metric(tendencies: np.ndarray) -> float:
    """The largest tendency's distance above the upper quartile, in interquartile ranges (the
    authors' quartiles: sorted non-zero values at indices 0.25n and 0.75n)."""
    values = np.sort(tendencies[tendencies != 0])
    q1, q3 = values[int(0.25 * len(values))], values[int(0.75 * len(values))]
    return float((values.max() - q3) / (q3 - q1)) if q3 > q1 else float("nan")


@register_tool("free_eagle", roles=("detect",), families=("vision",), audit_share=0.0)  # scored by the game
class FreeEagle:

    def __init__(self, seed: int = 0, steps: int = STEPS):
        if steps < 1:
            raise ValueError(f"free_eagle needs steps >= 1; got steps={steps}")
        self.seed, self.steps = seed, steps

    def audit(self, subject: Subject) -> Verdict:
        layer = split_layer(subject.model)
        if layer is None:
            return Verdict(p_planted=0.5, evidence={"inconclusive": "the model has fewer than two nn.Linear layers "
                                                                    "to split between"})
        scores, bounded = self.class_scores(subject, layer)
        if scores is None:
            return Verdict(p_planted=0.5, evidence={"inconclusive": "the second-to-last nn.Linear layer is not called "
                                                                    "once on a (batch, features) input"})
        if not np.isfinite(scores).all():
            return Verdict(p_planted=0.5, evidence={"inconclusive": "the later part gives NaN or infinite scores on "
                                                                    "the dummies (broken weights?)"})
        k = len(scores)
        np.fill_diagonal(scores, 0.0)
        tendencies = scores.mean(0) * k / (k - 1)
        metric = tendency_metric(tendencies)
        evidence = {"tendency": np.round(tendencies, 5).tolist(), "scores": np.round(scores, 5).tolist(),
                    "clamped_at_zero": bounded}
        if not np.isfinite(metric):
            return Verdict(p_planted=0.5, evidence={"inconclusive": "the tendencies have no interquartile spread",
                                                    **evidence})
        return Verdict(p_planted=squash(metric, MIDPOINT, SLOPE), target=int(tendencies.argmax()),
                       evidence={"metric": round(metric, 4), **evidence})

    def class_scores(self, subject: Subject, layer: nn.Linear) -> tuple[np.ndarray | None, bool]:
        """Row c: the softmax over classes of the later part on class c's optimised dummy; and
        whether the dummies were kept non-negative (the layer's input comes out of a ReLU)."""
        k, shape = subject.num_classes, subject.input_shape
        lo, hi = subject.value_range
        inputs = lo + (hi - lo) * torch.rand((64, *shape), generator=torch.Generator().manual_seed(self.seed))
        features = split_inputs(subject.model, layer, inputs)
        if features is None:
            return None, False
        bounded = bool((features >= 0).all())
        dummy = torch.rand((k, features.shape[1]), generator=torch.Generator().manual_seed(self.seed))
        dummy.requires_grad_(True)
        optimiser = torch.optim.Adam([dummy], lr=LR, weight_decay=WEIGHT_DECAY)
        probe, classes = torch.zeros((k, *shape)), torch.arange(k)  # what precedes the split is replaced
        hook = layer.register_forward_pre_hook(lambda _module, _inputs: (dummy,))
        try:
            for _ in range(self.steps):
                loss = F.cross_entropy(subject.model(probe), classes, reduction="sum")
                (dummy.grad,) = torch.autograd.grad(loss, dummy)  # the model's own weights get no gradient
                optimiser.step()
                if bounded:
                    with torch.no_grad():
                        dummy.clamp_(min=0.0)
            with torch.no_grad():
                scores = torch.softmax(subject.model(probe), 1).numpy().astype(np.float64)
        finally:
            hook.remove()
        return scores, bounded
