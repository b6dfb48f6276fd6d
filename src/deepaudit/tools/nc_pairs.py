"""Neural Cleanse over label pairs, judged by K-Arm's symmetric check (Shen et al., ICML 2021): a
one-to-one backdoor sends one *source* class to its target, so the class-level search of Neural
Cleanse (Wang et al., S&P 2019), which asks a trigger to move every class, needs a larger mask
than the planted one. K-Arm treats every (source, target) pair as an arm and searches for the
smallest mask that sends the source's inputs to the target; on 8x8 digits the smallest natural pair
(about two pixels between neighbouring digits) is smaller than a planted patch, so a pair's size
alone says little. K-Arm's symmetric check asks instead how much larger the reverse trigger
(target to source) is: two neighbouring classes are about as near each way, a planted pair is near
one way only. The statistic is the largest asymmetry over all pairs, in log mask size.

All 90 arms of a ten-class model are searched at once, in one batch (the source class's budget
inputs only, ``per_arm`` a step), with Neural Cleanse's adaptive L1 cost per arm; K-Arm's bandit
schedule, which spends steps on the arms that look smallest, is for models too large to search
every arm; here every arm gets the same steps. K-Arm's published pre-screening (an arm only where
the target is among the source inputs' top logits) found no candidate on the zoo's small models
(docs/vision.md), so no pair is pruned. The authors' code (``PurduePAML/K-ARM_Backdoor_Optimization``)
is written for TrojAI's image folders and models; no package runs it on an arbitrary PyTorch
classifier, hence this port of its arms and symmetric check.

Measured on the standard suite (docs/vision.md): AUROC 0.71 on the design draw 1 and 0.68 held out,
below the class-level ``nc_contrast`` on every card but the digits MLP (level there on draw 1),
and near chance on MNIST-1D. P(planted) is a logistic of the asymmetry fitted on draw 1."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict, squash
from deepaudit.tools.neural_cleanse import TriggerSearch, log_mask_sizes
from deepaudit.tools.registry import register_tool
from deepaudit.triggers import Trigger

# the asymmetry at P(planted) = 0.5 and the logistic's slope, fitted on the standard suite's draw 1
MIDPOINT, SLOPE = 1.50, 1.63
MAX_CLASSES = 20  # every pair is one search of one batch: 380 arms of 8 inputs a step at most


def pair_search(subject: Subject, seed: int, steps: int, per_arm: int, lr: float = 0.1, init_cost: float = 1e-3,
                target_asr: float = 0.9) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """For every (source, target) pair of classes with budget inputs of the source: the smallest
    (mask, pattern) found that sends at least ``target_asr`` of a step's source inputs to the
    target (an arm never solved: twice its final mask). Returns the ``(K, K)`` log mask sizes
    (NaN on the diagonal and for sources without inputs), and the masks and patterns indexed
    ``[source, target]``."""
    gen = torch.Generator().manual_seed(seed)
    k, shape = subject.num_classes, subject.input_shape
    pools = [torch.nonzero(subject.clean_y == source).flatten() for source in range(k)]
    arms = [(s, t) for s in range(k) for t in range(k) if s != t and len(pools[s])]
    searches = TriggerSearch(len(arms), shape, subject.value_range, gen, lr, init_cost)
    targets = torch.tensor([t for _, t in arms]).repeat_interleave(per_arm)
    for _ in range(steps):
        rows = torch.cat([pools[s][torch.randint(len(pools[s]), (per_arm,), generator=gen)] for s, _ in arms])
        logits = subject.model(searches.stamp(subject.clean_x[rows].view(len(arms), per_arm, *shape)))
        loss = F.cross_entropy(logits, targets, reduction="none").view(len(arms), -1).mean(1)
        with torch.no_grad():
            works = (logits.argmax(1) == targets).float().view(len(arms), -1).mean(1) >= target_asr
        searches.step(loss, works)
    found, found_patterns, solved = searches.result()
    log_sizes = np.full((k, k), np.nan)
    masks, patterns = torch.zeros((k, k, *shape[1:])), torch.zeros((k, k, *shape))
    for arm, (s, t) in enumerate(arms):
        masks[s, t], patterns[s, t] = found[arm], found_patterns[arm]
    log_sizes[tuple(zip(*arms))] = log_mask_sizes(found, solved)
    return log_sizes, masks, patterns


def asymmetry(log_sizes: np.ndarray) -> np.ndarray:
    """``[s, t]``: how much larger (in log mask size) the trigger from t back to s is than the one
    from s to t; NaN where either arm was not searched."""
    out: np.ndarray = log_sizes.T - log_sizes
    return out


@register_tool("nc_pairs", roles=("detect",), families=("vision",), needs=("continuous_inputs",), audit_share=0.0)
class NCPairs:

    def __init__(self, seed: int = 0, steps: int = 200, per_arm: int = 8, target_asr: float = 0.9,
                 midpoint: float = MIDPOINT, slope: float = SLOPE):
        if steps < 1 or per_arm < 1 or not 0 < target_asr <= 1 or slope <= 0:
            raise ValueError(f"nc_pairs needs steps >= 1, per_arm >= 1, 0 < target_asr <= 1 and slope > 0; "
                             f"got steps={steps}, per_arm={per_arm}, target_asr={target_asr}, slope={slope}")
        self.seed, self.steps, self.per_arm, self.target_asr = seed, steps, per_arm, target_asr
        self.midpoint, self.slope = midpoint, slope

    def audit(self, subject: Subject) -> Verdict:
        present = int(subject.clean_y.unique().numel())
        if present > MAX_CLASSES:
            return Verdict(p_planted=0.5, evidence={"inconclusive": f"the budget holds inputs of {present} classes; "
                                                                    f"searching all {present * (present - 1)} pairs at "
                                                                    f"once is for at most {MAX_CLASSES}"})
        if present < 2:
            return Verdict(p_planted=0.5, evidence={"inconclusive": f"the budget holds inputs of {present} class; "
                                                                    "a pair needs a source and a target"})
        log_sizes, masks, patterns = pair_search(subject, self.seed, self.steps, self.per_arm,
                                                 target_asr=self.target_asr)
        gaps = asymmetry(log_sizes)
        source, target = np.unravel_index(np.nanargmax(gaps), gaps.shape)
        statistic = float(gaps[source, target])
        trigger = Trigger("stamp", mask=masks[source, target].numpy(), pattern=patterns[source, target].numpy())
        rounded = [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in log_sizes]
        return Verdict(p_planted=squash(statistic, self.midpoint, self.slope), target=int(target), trigger=trigger,
                       evidence={"asymmetry": round(statistic, 4), "source": int(source),
                                 "log_mask_size": rounded})
