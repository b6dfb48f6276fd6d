"""ABS, Artificial Brain Stimulation (Liu et al., CCS 2019): a planted trigger is read by a few
inner neurons that, once excited, send *every* input to the target, whatever else the input holds.
Stimulation analysis sets one neuron (a unit, or a channel of a convolution) at a time to values
up to several times its largest activation on the budget and records how far each class's logit
rises; a candidate is a neuron that raises the same class above all others on at least 90% of the
inputs, ranked by the smallest such lead over inputs of other classes. For the leading candidates
a trigger is then reverse-engineered that excites the neuron (and not its layer's others) within a
mask of bounded size; the share of the budget's other-class inputs that trigger sends to the
candidate's class (REASR) is the detection score, as in the paper. By default the trigger also
raises the candidate class's logit, as the authors' TrojAI round-1 code does (weight 1, tripled
after half the steps); ``logit_weight=0`` is the paper's neuron-only objective. On the standard
suite's design draw 1 the TrojAI objective ranked models at AUROC 0.75, the paper's at 0.63
(docs/vision.md).

Written from the paper and the authors' PyTorch code for TrojAI round 1 (``naiyeleo/ABS``), for
small classifiers: every ReLU layer is stimulated (the authors take the last two of a large
network), the mask is bounded by its L1 size (a blend spreads a small weight over every position,
which a count of non-zero positions would refuse), and no library packages ABS for PyTorch models
of any architecture (TrojanZoo's needs its own model classes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deepaudit.internals.ablation import activation_layers
from deepaudit.internals.capture import Intervention, capture, intervene
from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict
from deepaudit.tools.registry import register_tool
from deepaudit.triggers import Trigger

SCALES = (0.0, 1.0, 2.0, 4.0, 8.0)  # stimulation values, in units of the layer's largest activation
CONSISTENT = 0.9  # share of inputs whose top raised class must agree (the authors' 90%)


@dataclass(frozen=True)
class Candidate:
    """A neuron that stimulation found raising one class for (nearly) every input."""

    layer: str
    neuron: int
    label: int
    lead: float  # the smallest lead of the raised class over the next, over other classes' inputs


def stimulus(neuron: int, values: torch.Tensor) -> Intervention:
    """An intervention that sets neuron ``neuron`` (a unit, or a whole channel) of a module's
    output to ``values[i]`` in row i."""
    def fn(out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[:, neuron] = values.view(-1, *([1] * (out.dim() - 2)))
        return out
    return fn


@torch.no_grad()
def stimulate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, scales: tuple[float, ...] = SCALES,
              consistent: float = CONSISTENT) -> list[Candidate]:
    """Every neuron of every ReLU layer that raises one class above the rest on at least
    ``consistent`` of the inputs ``x``, with its smallest lead over inputs not of that class."""
    layers = activation_layers(model)
    with capture(model, layers) as cache:
        model(x)
    n, found = len(x), []
    tiled = x.repeat(len(scales), *([1] * (x.dim() - 1)))
    for name in layers:
        values = torch.tensor(scales).repeat_interleave(n) * max(float(cache[name].max()), 1e-6)
        for neuron in range(cache[name].shape[1]):
            with intervene(model, {name: stimulus(neuron, values)}):
                logits = model(tiled).view(len(scales), n, -1)
            rise = logits[1:].max(0).values - logits[0]  # (n, K): each class's largest rise
            top2 = rise.topk(2, dim=1)
            label = int(top2.indices[:, 0].mode().values)
            agree = top2.indices[:, 0] == label
            others = agree & (y != label)
            if float(agree.float().mean()) < consistent or not others.any():
                continue
            lead = top2.values[:, 0] - top2.values[:, 1]
            found.append(Candidate(name, neuron, label, float(lead[others].min())))
    return found


def excitation(pre: torch.Tensor, post: torch.Tensor, neuron: int) -> torch.Tensor:
    """ABS's objective on one layer, before and after its activation: the neuron's mean less a
    ten-thousandth of the other neurons' means (so the trigger excites it, not the whole layer)."""
    pre, post = (t.reshape(len(t), t.shape[1], -1) for t in (pre, post))
    own = torch.zeros(pre.shape[1], dtype=torch.bool)
    own[neuron] = True
    return pre[:, own].mean() + post[:, own].mean() - 1e-4 * (pre[:, ~own].mean() + post[:, ~own].mean())


def leading(candidates: list[Candidate], top: int) -> list[Candidate]:
    """The ``top`` candidates of largest lead, at most one per class (the authors' rule)."""
    chosen: list[Candidate] = []
    for cand in sorted(candidates, key=lambda c: -c.lead):
        if all(c.label != cand.label for c in chosen):
            chosen.append(cand)
        if len(chosen) == top:
            break
    return chosen


@register_tool("abs", roles=("detect",), families=("vision",), needs=("continuous_inputs",), audit_share=0.0)
class ABS:

    def __init__(self, seed: int = 0, top: int = 5, steps: int = 150, batch_size: int = 64, lr: float = 0.1,
                 bound: float = 0.15, seeds_per_class: int = 5, logit_weight: float = 1.0):
        if (top < 1 or steps < 1 or batch_size < 1 or lr <= 0 or not 0 < bound <= 1 or seeds_per_class < 1
                or logit_weight < 0):
            raise ValueError(f"abs needs top, steps, batch_size, seeds_per_class >= 1, lr > 0, 0 < bound <= 1 and "
                             f"logit_weight >= 0; got top={top}, steps={steps}, batch_size={batch_size}, lr={lr}, "
                             f"bound={bound}, seeds_per_class={seeds_per_class}, logit_weight={logit_weight}")
        self.seed, self.top, self.steps, self.batch_size, self.lr = seed, top, steps, batch_size, lr
        self.bound, self.seeds_per_class, self.logit_weight = bound, seeds_per_class, logit_weight

    def audit(self, subject: Subject) -> Verdict:
        if not activation_layers(subject.model):
            return Verdict(p_planted=0.5, evidence={"inconclusive": "the model has no ReLU layer whose neurons ABS "
                                                                    "could stimulate"})
        x, y = self.seed_inputs(subject)
        candidates = stimulate(subject.model, x, y)
        if not candidates:
            return Verdict(p_planted=0.0, evidence={"candidates": 0, "reasr": []})
        chosen = leading(candidates, self.top)
        results = [self.reverse_engineer(subject, cand) for cand in chosen]
        reasrs = [r[0] for r in results]
        best = int(np.argmax(reasrs))
        _, mask, pattern = results[best]
        trigger = Trigger("stamp", mask=mask.numpy(), pattern=pattern.numpy())
        return Verdict(p_planted=float(max(reasrs)), target=chosen[best].label, trigger=trigger,
                       evidence={"candidates": len(candidates),
                                 "chosen": [[c.layer, c.neuron, c.label, round(c.lead, 4)] for c in chosen],
                                 "reasr": [round(r, 4) for r in reasrs],
                                 "mask_l1": [round(float(r[1].sum()), 3) for r in results]})

    def seed_inputs(self, subject: Subject) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to ``seeds_per_class`` budget inputs of each class (the authors' seed images)."""
        rows = torch.cat([torch.nonzero(subject.clean_y == c)[: self.seeds_per_class, 0]
                          for c in range(subject.num_classes)])
        return subject.clean_x[rows], subject.clean_y[rows]

    def reverse_engineer(self, subject: Subject, cand: Candidate) -> tuple[float, torch.Tensor, torch.Tensor]:
        """A mask and pattern that excite ``cand``'s neuron more than its layer's others, its mask's
        L1 size kept under ``bound`` of the positions; returns the share of the budget's inputs of
        other classes it sends to the candidate's class, the mask and the pattern."""
        gen = torch.Generator().manual_seed(self.seed)
        shape = subject.input_shape
        lo, hi = subject.value_range
        limit = self.bound * float(np.prod(shape[1:]))
        module = dict(subject.model.named_modules())[cand.layer]
        mask_logit = torch.full(shape[1:], -3.0, requires_grad=True)
        pattern_logit = (0.1 * torch.randn(shape, generator=gen)).requires_grad_(True)
        optimiser = torch.optim.Adam([mask_logit, pattern_logit], lr=self.lr)
        other = subject.clean_x[subject.clean_y != cand.label]  # never empty: a candidate has such inputs
        seen: dict[str, torch.Tensor] = {}  # the ReLU's input and output: ABS excites both
        handle = module.register_forward_hook(lambda _m, inputs, out: seen.update(pre=inputs[0], post=out))
        try:
            for step in range(self.steps):
                batch = other[torch.randint(len(other), (self.batch_size,), generator=gen)]
                mask = torch.sigmoid(mask_logit)
                pattern = lo + (hi - lo) * torch.sigmoid(pattern_logit)
                logits = subject.model((1 - mask) * batch + mask * pattern)
                loss = -excitation(seen["pre"], seen["post"], cand.neuron)
                if self.logit_weight:  # the authors' TrojAI code: the class's logit too, tripled halfway
                    weight = self.logit_weight * (3.0 if step > self.steps // 2 else 1.0)
                    loss = loss - weight * logits[:, cand.label].mean()
                size = mask.sum()
                over = float(size.detach()) / limit
                size_weight = (100.0 if over > 1.2 else 50.0) if over > 1 else 0.01  # the authors' mask loss
                optimiser.zero_grad()
                (loss + size_weight * size).backward()
                optimiser.step()
        finally:
            handle.remove()
        with torch.no_grad():
            mask = torch.sigmoid(mask_logit)
            if float(mask.sum()) > limit:  # the bound is a constraint, not a wish
                mask = mask * (limit / float(mask.sum()))
            pattern = lo + (hi - lo) * torch.sigmoid(pattern_logit)
            moved = subject.model((1 - mask) * other + mask * pattern).argmax(1) == cand.label
        return float(moved.float().mean()), mask, pattern
