"""Maximum-margin backdoor detection, MM-BD (Wang, Xiang, Miller & Kesidis, IEEE S&P 2024): for
every class, the largest margin (its logit minus the largest other logit) that any input in the
card's value range reaches, by gradient ascent from random inputs. A backdoor's target class is
reachable from every input through its trigger, so the model has learnt an input pattern that
drives that class's logit far above the rest, whatever the trigger's form (patch, blend, warp):
the search needs no clean input and no model of the trigger. The null is the other classes'
maxima; P(planted) is one minus the p-value of the largest, so a combination can use it.

Three departures from the authors' ``univ_bd.py``. The starting inputs are uniform in the card's
value range, not in [0, 1], and the step is Adam's, sized to that range (plain SGD's step follows
the logits' scale). The null is Student's t prediction interval of the log maxima, Bonferroni
over the K classes, instead of a gamma fitted to the other K-1 maxima: on the quick suite's two
seeds (the design draws) the gamma's p-value fell below 0.05 on 17% of the clean models, this one
on none, with the same ranking (detect AUROC 0.73 and 0.76 either way)."""

from __future__ import annotations

import numpy as np
import torch

from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict, prediction_tail
from deepaudit.tools.registry import register_tool
from deepaudit.tools.sizing import Allowance

MIN_STEPS = 50  # fewer steps leave the margins far from their maxima


def size_to(allowance: Allowance) -> dict[str, int]:
    """As many ascent steps (up to the default 300) as the allowance fits."""
    return allowance.steps(allowance.per_step(30), MIN_STEPS)


def margins(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each row's logit of its target less its largest other logit."""
    own = logits.gather(1, targets[:, None])[:, 0]
    others = logits.scatter(1, targets[:, None], float("-inf"))
    return own - others.max(1).values


def top_p_value(maxima: np.ndarray) -> float:
    """How unlikely the largest maximum is beside the others: Student's t prediction tail of its
    log against the other K-1 logs, times K (Bonferroni: the largest was picked out of K)."""
    logs = np.log(np.maximum(maxima, 1e-3))  # a class no input reaches counts as a tiny margin
    tail = prediction_tail(float(logs.max()), np.delete(logs, logs.argmax()))
    return tail if np.isnan(tail) else min(1.0, len(logs) * tail)


@register_tool("mm_bd", roles=("detect",), families=("vision",), needs=("continuous_inputs",),
               audit_share=0.0, sizing=size_to)  # scored by the game (a part of combine_stouffer)
class MaxMargin:

    def __init__(self, seed: int = 0, steps: int = 300, starts: int = 30, lr: float = 0.01):
        if steps < 1 or starts < 1 or lr <= 0:
            raise ValueError(f"mm_bd needs steps >= 1, starts >= 1 and lr > 0; got steps={steps}, "
                             f"starts={starts}, lr={lr}")
        self.seed, self.steps, self.starts, self.lr = seed, steps, starts, lr

    def audit(self, subject: Subject) -> Verdict:
        maxima = self.max_margins(subject)
        p_value = top_p_value(maxima)
        if not np.isfinite(p_value):
            return Verdict(p_planted=0.5, evidence={"inconclusive": "every class reaches the same margin: no spread",
                                                    "max_margin": np.round(maxima, 4).tolist()})
        return Verdict(p_planted=1.0 - p_value, target=int(maxima.argmax()),
                       evidence={"p_value": p_value, "max_margin": np.round(maxima, 4).tolist()})

    def max_margins(self, subject: Subject) -> np.ndarray:
        """Per class, the largest margin reached from ``starts`` random inputs in ``steps`` ascent steps."""
        gen = torch.Generator().manual_seed(self.seed)
        k, shape = subject.num_classes, subject.input_shape
        lo, hi = subject.value_range
        targets = torch.arange(k).repeat_interleave(self.starts)
        x = (lo + (hi - lo) * torch.rand((len(targets), *shape), generator=gen)).requires_grad_(True)
        optimiser = torch.optim.Adam([x], lr=self.lr * (hi - lo))
        for _ in range(self.steps):
            loss = -margins(subject.model(x), targets).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                x.clamp_(lo, hi)
        with torch.no_grad():
            reached = margins(subject.model(x), targets).view(k, self.starts)
        return reached.max(1).values.numpy().astype(np.float64)
