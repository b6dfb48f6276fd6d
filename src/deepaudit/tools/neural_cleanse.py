"""Neural Cleanse (Wang et al., S&P 2019): for every class, reverse-engineer the smallest
mask-and-pattern trigger that sends clean inputs there; a class whose trigger is abnormally
small (MAD anomaly index above 2) is the backdoor target. All classes are optimised in one
batched run, with the paper's adaptive L1 cost (raised while the trigger works, lowered
while it does not)."""

from __future__ import annotations

from typing import Protocol

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


class AdaptiveCost:
    """Neural Cleanse's adaptive cost, one per search: raised 5% a step while the search's trigger
    works, lowered faster (1.05^1.5) while it does not, within ``[lowest, highest]``; and each
    search's smallest working norm so far."""

    def __init__(self, count: int, init_cost: float, lowest: float = 1e-5, highest: float = 10.0):
        self.cost = torch.full((count,), init_cost)
        self.best_norm = torch.full((count,), float("inf"))
        self.lowest, self.highest = lowest, highest

    def update(self, norm: torch.Tensor, works: torch.Tensor) -> torch.Tensor:
        """Record a step's norms and whether each trigger worked; returns which searches found
        their smallest working trigger so far."""
        better = works & (norm < self.best_norm)
        self.best_norm = torch.where(better, norm, self.best_norm)
        self.cost = torch.where(works, self.cost * 1.05, self.cost / 1.05**1.5).clamp(self.lowest, self.highest)
        return better

    @property
    def solved(self) -> torch.Tensor:
        """Which searches found a working trigger at all."""
        return torch.isfinite(self.best_norm)


class Searches(Protocol):
    """A batch of trigger searches, one step at a time: ``stamp`` inputs with each search's current
    trigger, then ``step`` on each search's loss and whether its trigger worked; ``result`` the
    smallest working triggers (and, last, which searches found one)."""

    def stamp(self, x: torch.Tensor) -> torch.Tensor: ...

    def step(self, loss: torch.Tensor, works: torch.Tensor) -> None: ...

    def result(self) -> tuple[torch.Tensor, ...]: ...


class TriggerSearch:
    """``count`` mask-and-pattern searches run as one batch, in the paper's parametrisation (a
    sigmoid mask shared over channels, a pattern squashed into the value range), with Adam and the
    paper's adaptive L1 cost per search (raised while its trigger works, lowered faster while it
    does not), keeping each search's smallest working mask. ``stamp`` then ``step``, once a step."""

    def __init__(self, count: int, shape: tuple[int, ...], value_range: tuple[float, float],
                 generator: torch.Generator, lr: float, init_cost: float):
        self.shape, (self.lo, self.hi) = shape, value_range
        self.mask_logit = torch.full((count, *shape[1:]), -2.0, requires_grad=True)
        self.pattern_logit = (0.1 * torch.randn((count, *shape), generator=generator)).requires_grad_(True)
        self.optimiser = torch.optim.Adam([self.mask_logit, self.pattern_logit], lr=lr, betas=(0.5, 0.9))
        self.costs = AdaptiveCost(count, init_cost)
        self.best_mask = torch.sigmoid(self.mask_logit.detach()).clone()
        self.best_pattern = self.lo + (self.hi - self.lo) * torch.sigmoid(self.pattern_logit.detach())
        self.mask, self.pattern = self.best_mask.unsqueeze(1), self.best_pattern

    def stamp(self, x: torch.Tensor) -> torch.Tensor:
        """Search i's current stamp on ``x[i]`` (``(count, batch, *shape)``; a leading 1
        broadcasts one batch to every search), flattened to ``(count * batch, *shape)``."""
        self.mask = torch.sigmoid(self.mask_logit).unsqueeze(1)  # (count, 1, *spatial)
        self.pattern = self.lo + (self.hi - self.lo) * torch.sigmoid(self.pattern_logit)
        stamped = (1 - self.mask.unsqueeze(1)) * x + (self.mask * self.pattern).unsqueeze(1)
        return stamped.reshape(-1, *self.shape)

    def step(self, loss: torch.Tensor, works: torch.Tensor) -> None:
        """One optimiser step on each search's ``loss`` plus its L1 cost; a search whose stamp
        ``works`` keeps its mask if it is its smallest so far."""
        norm = self.mask.flatten(1).sum(1)
        self.optimiser.zero_grad()
        (loss + self.costs.cost * norm).sum().backward()
        self.optimiser.step()
        with torch.no_grad():
            better = self.costs.update(norm.detach(), works)
            self.best_mask[better] = self.mask.detach()[better, 0]
            self.best_pattern[better] = self.pattern.detach()[better]

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each search's smallest working mask and its pattern, and which searches found one (the
        others: their final mask)."""
        solved = self.costs.solved
        self.best_mask[~solved] = torch.sigmoid(self.mask_logit.detach())[~solved]
        return self.best_mask, self.best_pattern, solved


def log_mask_sizes(masks: torch.Tensor, solved: torch.Tensor) -> np.ndarray:
    """Each search's log mask size; one never solved counts as twice its final mask (it needed
    more than it was given)."""
    sizes = masks.flatten(1).sum(1) * torch.where(solved, 1.0, 2.0)
    out: np.ndarray = np.log(sizes.numpy() + 1e-6)
    return out


def log_gap(log_sizes: np.ndarray) -> float:
    """How far (in log size) the smallest class's trigger lies below the median class's."""
    return float(np.median(log_sizes) - log_sizes.min())


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

    def space(self, subject: Subject, generator: torch.Generator) -> Searches:
        """One search a class, as one batch: mask-and-pattern stamps (``warp_cleanse``: smooth warps)."""
        return TriggerSearch(subject.num_classes, subject.input_shape, subject.value_range, generator,
                             self.lr, self.init_cost)

    def search(self, subject: Subject, reference: nn.Module | None = None,
               keep: float = 0.5) -> tuple[torch.Tensor, ...]:
        """Per class, the smallest (mask, pattern) that sends at least ``target_asr`` of the
        budget to the class; with a ``reference`` model, only one that also leaves at least
        ``keep`` of the other classes' inputs where the reference puts them unstamped counts (its
        cross-entropy on those classes is added to the loss). The reference's own classes, not the
        budget's labels: a reference that is wrong on a third of the budget (MNIST-1D students)
        would otherwise fail the check unstamped, and the search would grow every mask to raise
        its accuracy instead of to leave it alone. Returns the masks ``(K, *spatial)``, patterns
        and which classes were solved (unsolved ones: the final mask); ``space``'s other searches
        their own result."""
        gen = torch.Generator().manual_seed(self.seed)
        k = subject.num_classes
        searches = self.space(subject, gen)
        targets = torch.arange(k).repeat_interleave(self.batch_size)
        x_all = subject.clean_x
        if reference is not None:
            with torch.no_grad():
                reference_class = reference(x_all).argmax(1)
        for _ in range(self.steps):
            batch = torch.randint(len(x_all), (self.batch_size,), generator=gen)
            stamped = searches.stamp(x_all[batch].unsqueeze(0))
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
            searches.step(loss, works)
        return searches.result()
