"""Neural Cleanse (Wang et al., S&P 2019): for every class, reverse-engineer the smallest
mask-and-pattern trigger that sends clean inputs there; a class whose trigger is abnormally
small (MAD anomaly index above 2) is the backdoor target. All classes are optimised in one
batched run, with the paper's adaptive L1 cost (raised while the trigger works, lowered
while it does not)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict, anomaly_index, squash
from deepaudit.tools.registry import register_tool
from deepaudit.tools.sizing import Allowance
from deepaudit.triggers import Trigger

MIN_STEPS = 100  # fewer steps leave every class's mask unconverged: no answer at all


def next_cost(cost: torch.Tensor, works: torch.Tensor) -> torch.Tensor:
    """The paper's adaptive L1 cost, per search: raised while its trigger works, lowered (faster)
    while it does not."""
    return torch.where(works, cost * 1.05, cost / 1.05**1.5).clamp(1e-5, 10.0)


def size_to(allowance: Allowance) -> dict[str, int]:
    """As many optimisation steps (up to the default 300) as the allowance fits."""
    return allowance.steps(allowance.per_step(32), MIN_STEPS)


@register_tool("neural_cleanse", roles=("detect",), families=("vision",), needs=("continuous_inputs",),
               provides="trigger", audit_share=0.45, sizing=size_to)
class NeuralCleanse:

    def __init__(self, seed: int = 0, steps: int = 300, batch_size: int = 32, lr: float = 0.1,
                 init_cost: float = 1e-3, target_asr: float = 0.99, threshold: float = 2.0):
        self.seed, self.steps, self.batch_size, self.lr = seed, steps, batch_size, lr
        self.init_cost, self.target_asr, self.threshold = init_cost, target_asr, threshold

    def audit(self, subject: Subject) -> Verdict:
        masks, patterns = self.reverse_engineer(subject)
        norms = masks.flatten(1).sum(1).numpy()
        index = anomaly_index(norms, low=True)
        target = int(norms.argmin())
        trigger = Trigger("stamp", mask=masks[target].numpy(), pattern=patterns[target].numpy())
        return Verdict(p_planted=squash(index, self.threshold), target=target, trigger=trigger,
                       evidence={"anomaly_index": round(index, 4), "mask_l1": np.round(norms, 4).tolist()})

    def reverse_engineer(self, subject: Subject) -> tuple[torch.Tensor, torch.Tensor]:
        """Per class: the smallest working (mask, pattern) found; masks ``(K, *spatial)``. A class
        that never reached the target ASR keeps its final mask (its norm is the class's score)."""
        masks, patterns, _ = self.search(subject)
        return masks, patterns

    def search(self, subject: Subject, reference: nn.Module | None = None,
               keep: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per class, the smallest (mask, pattern) that sends at least ``target_asr`` of the
        budget to the class; with a ``reference`` model, only one that also leaves at least
        ``keep`` of the other classes' inputs where the reference puts them unstamped counts (its
        cross-entropy on those classes is added to the loss). The reference's own classes, not the
        budget's labels: a reference that is wrong on a third of the budget (MNIST-1D students)
        would otherwise fail the check unstamped, and the search would grow every mask to raise
        its accuracy instead of to leave it alone. Returns the masks ``(K, *spatial)``, patterns
        and which classes were solved (unsolved ones: the final mask)."""
        gen = torch.Generator().manual_seed(self.seed)
        k, shape = subject.num_classes, subject.input_shape
        lo, hi = subject.value_range
        mask_logit = torch.full((k, *shape[1:]), -2.0, requires_grad=True)
        pattern_logit = (0.1 * torch.randn((k, *shape), generator=gen)).requires_grad_(True)
        optimiser = torch.optim.Adam([mask_logit, pattern_logit], lr=self.lr, betas=(0.5, 0.9))
        cost = torch.full((k,), self.init_cost)
        targets = torch.arange(k).repeat_interleave(self.batch_size)
        best_norm = torch.full((k,), float("inf"))
        best_mask = torch.sigmoid(mask_logit.detach()).clone()
        best_pattern = lo + (hi - lo) * torch.sigmoid(pattern_logit.detach())
        x_all = subject.clean_x
        if reference is not None:
            with torch.no_grad():
                reference_class = reference(x_all).argmax(1)
        for _ in range(self.steps):
            batch = torch.randint(len(x_all), (self.batch_size,), generator=gen)
            x = x_all[batch]
            mask = torch.sigmoid(mask_logit).unsqueeze(1)  # (K, 1, *spatial): shared over channels
            pattern = lo + (hi - lo) * torch.sigmoid(pattern_logit)
            stamped = ((1 - mask.unsqueeze(1)) * x.unsqueeze(0) + (mask * pattern).unsqueeze(1)).reshape(-1, *shape)
            logits = subject.model(stamped)
            loss = F.cross_entropy(logits, targets, reduction="none").view(k, -1).mean(1)
            with torch.no_grad():
                works = (logits.argmax(1) == targets).float().view(k, -1).mean(1) >= self.target_asr
            if reference is not None:
                own_label = reference_class[batch].repeat(k)
                other = own_label != targets  # inputs already of the class may stay there
                ref_logits = reference(stamped)
                moved = F.cross_entropy(ref_logits, own_label, reduction="none") * other
                per_class = other.view(k, -1).sum(1).clamp(min=1)
                loss = loss + moved.view(k, -1).sum(1) / per_class
                with torch.no_grad():
                    kept = ((ref_logits.argmax(1) == own_label) | ~other).float().view(k, -1).mean(1)
                    works &= kept >= keep
            norm = mask.flatten(1).sum(1)
            optimiser.zero_grad()
            (loss + cost * norm).sum().backward()
            optimiser.step()
            with torch.no_grad():
                better = works & (norm.detach() < best_norm)
                best_norm = torch.where(better, norm.detach(), best_norm)
                best_mask[better] = mask.detach()[better, 0]
                best_pattern[better] = pattern.detach()[better]
                cost = next_cost(cost, works)
        solved = torch.isfinite(best_norm)
        final_mask = torch.sigmoid(mask_logit.detach())
        best_mask[~solved] = final_mask[~solved]
        return best_mask, best_pattern, solved
