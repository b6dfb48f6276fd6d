"""Neural Cleanse over smooth warps: for every class, the smallest displacement field that sends clean
inputs there. A warp backdoor (WaNet, Nguyen & Tran, ICLR 2021) moves no pixel's value, only where
pixels are read from, so a mask-and-pattern search has no small stamp to find; inverting the trigger
in the space of the attack's own transformation is UNICORN's answer (Wang et al., ICLR 2023). The
field is searched as WaNet draws one: a coarse grid of displacements (4 x 4 for images, 8 points
for sequences) upsampled to the input (bicubic, linear), with Neural Cleanse's adaptive cost on its
mean absolute displacement. A class whose field is far smaller than the median class's is the
suspect (the log gap, as ``nc_contrast`` reads mask sizes); its field is the recovered trigger."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict, squash
from deepaudit.tools.neural_cleanse import MIN_STEPS, AdaptiveCost, NeuralCleanse, log_gap, log_mask_sizes
from deepaudit.tools.registry import register_tool
from deepaudit.tools.sizing import Allowance
from deepaudit.triggers import Trigger, warp

COARSE = {2: (4, 4), 1: (8,)}  # control points of a searched field, by the input's spatial dimensions
STEPS, BATCH = 200, 16
# the log gap at P(planted) = 0.5 and the logistic's slope: a logistic regression of planted on the log gap over
# the standard suite's design draw 1 (312 organisms, searches at seed 0; docs/vision.md)
MIDPOINT, SLOPE = 0.57, 2.56


class WarpSearch:
    """``count`` smooth-warp searches run as one batch (``Searches``): each a coarse displacement
    field, upsampled to the input, with Adam and Neural Cleanse's adaptive cost on the field's mean
    absolute displacement (in grid units of [-1, 1]), keeping each search's smallest working field."""

    def __init__(self, count: int, shape: tuple[int, ...], generator: torch.Generator, lr: float, init_cost: float):
        self.shape, self.spatial = shape, shape[1:]
        if len(self.spatial) not in COARSE:
            raise ValueError(f"a warp search needs images or sequences, got inputs of shape {shape}")
        coarse = (count, len(self.spatial), *COARSE[len(self.spatial)])
        self.coarse = (0.01 * torch.randn(coarse, generator=generator)).requires_grad_(True)
        self.optimiser = torch.optim.Adam([self.coarse], lr=lr, betas=(0.5, 0.9))
        self.costs = AdaptiveCost(count, init_cost, lowest=1e-4)
        self.flow = self.fine()
        self.best_flow = self.flow.detach().clone()

    def fine(self) -> torch.Tensor:
        """The searched fields at the input's resolution, ``(count, dims, *spatial)``."""
        mode = "bicubic" if len(self.spatial) == 2 else "linear"
        return F.interpolate(self.coarse, size=self.spatial, mode=mode, align_corners=True)

    def stamp(self, x: torch.Tensor) -> torch.Tensor:
        """Search i's current warp of ``x[i]`` (``(count, batch, *shape)``; a leading 1 broadcasts
        one batch to every search), flattened to ``(count * batch, *shape)``."""
        self.flow = self.fine()
        count, batch = len(self.flow), x.shape[1]
        inputs = x.expand(count, *x.shape[1:]).reshape(-1, *self.shape)
        return warp(inputs, self.flow.repeat_interleave(batch, dim=0))

    def step(self, loss: torch.Tensor, works: torch.Tensor) -> None:
        """One optimiser step on each search's ``loss`` plus its displacement cost; a search whose
        warp ``works`` keeps its field if it is its smallest so far."""
        norm = self.flow.abs().flatten(1).mean(1)
        self.optimiser.zero_grad()
        (loss + self.costs.cost * norm).sum().backward()
        self.optimiser.step()
        with torch.no_grad():
            better = self.costs.update(norm.detach(), works)
            self.best_flow[better] = self.flow.detach()[better]

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each search's smallest working field and which searches found one (the others: their
        final field)."""
        solved = self.costs.solved
        self.best_flow[~solved] = self.fine().detach()[~solved]
        return self.best_flow, solved


def log_flow_sizes(flows: torch.Tensor, solved: torch.Tensor) -> np.ndarray:
    """Each search's log mean absolute displacement; one never solved counts twice its final field
    (``log_mask_sizes`` of the per-search means)."""
    return log_mask_sizes(flows.abs().flatten(1).mean(1, keepdim=True), solved)


def size_to(allowance: Allowance) -> dict[str, int]:
    """As many search steps (up to the default) as the allowance fits; a step warps ``BATCH``
    inputs a class and runs them forward and backward."""
    return allowance.steps(allowance.per_step(BATCH), MIN_STEPS, most=STEPS)


@register_tool("warp_cleanse", roles=("detect",), families=("vision",), needs=("continuous_inputs",),
               audit_share=0.0, sizing=size_to)
class WarpCleanse(NeuralCleanse):

    def __init__(self, seed: int = 0, steps: int = STEPS, batch_size: int = BATCH, lr: float = 0.05,
                 init_cost: float = 0.1, target_asr: float = 0.9):
        super().__init__(seed=seed, steps=steps, batch_size=batch_size, lr=lr, init_cost=init_cost,
                         target_asr=target_asr)

    def space(self, subject: Subject, generator: torch.Generator) -> WarpSearch:
        return WarpSearch(subject.num_classes, subject.input_shape, generator, self.lr, self.init_cost)

    def audit(self, subject: Subject) -> Verdict:
        flows, solved = self.search(subject)
        log_sizes = log_flow_sizes(flows, solved)
        gap = log_gap(log_sizes)
        target = int(log_sizes.argmin())
        return Verdict(p_planted=squash(gap, MIDPOINT, SLOPE), target=target,
                       trigger=Trigger("warp", flow=flows[target].numpy()),
                       evidence={"log_gap": round(gap, 4), "log_flow_size": np.round(log_sizes, 4).tolist(),
                                 "unsolved": int((~solved).sum())})
