"""A clean reference made from the audited model itself: the same feature extractor with its
output layer re-initialised and retrained on the trusted budget alone. A planted trigger reaches
its target through features that clean inputs never turn on, so the retrained layer gives them
little weight towards the target, while every shortcut the clean data teaches (a class that is
easy to reach in any model of the task) stays. Re-initialising the linear head is how Feature
Shift Tuning removes backdoors (Min et al., NeurIPS 2023); here the re-headed model is the null a
statistic is compared with, class by class. It costs seconds and needs no data beyond the budget,
and it works where the features are rich and the trigger is not already written into them
(MNIST-1D; on 8x8 digits a patch trigger survives the refit, and shadows trained from scratch on
the budget are the better reference there: ``deepaudit.tools.shadow``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from deepaudit.internals.capture import module_inputs

REFIT_STEPS, REFIT_BATCH = 300, 64  # minibatches of the budget the re-initialised layers are trained on


def head_inputs(model: nn.Module, head: nn.Linear, x: torch.Tensor) -> torch.Tensor | None:
    """What ``head`` receives when ``model`` reads ``x``, when the head's output is the model's
    (nothing after it); else None. Everything before the head is frozen during the refit, so its
    minibatches can read these once-computed features instead of running the whole model again
    (the same losses: 300 forward passes of 64 inputs become one of the budget)."""
    seen, output = module_inputs(model, head, x)
    if len(seen) != 1 or not isinstance(output, torch.Tensor):
        return None
    with torch.no_grad():
        return seen[0] if torch.equal(head(seen[0]), output) else None


@contextmanager
def refitted_head(model: nn.Module, x: torch.Tensor, y: torch.Tensor, layers: int = 1, steps: int = REFIT_STEPS,
                  seed: int = 0) -> Iterator[nn.Module]:
    """Within the block, ``model``'s last ``layers`` linear layers are re-initialised and trained
    on (x, y) with everything before them frozen (AdamW, ``steps`` minibatches of ``REFIT_BATCH``); the
    original weights are put back after it, also after an exception. The model is changed in
    place (not copied) so that its forward passes are counted where they always are. When the
    last layer alone is refitted and nothing follows it, its inputs are computed once
    (``head_inputs``)."""
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if len(linear) < layers:
        raise ValueError(f"re-heading {layers} layers needs as many nn.Linear layers; the model has {len(linear)}")
    refit = linear[-layers:]
    features = head_inputs(model, refit[0], x) if layers == 1 else None
    params = [p for m in refit for p in m.parameters()]
    saved = [p.detach().clone() for p in params]
    generator = torch.Generator().manual_seed(seed)
    try:
        with torch.random.fork_rng(devices=[]):  # the re-initialisation draws from a seed of its own
            torch.manual_seed(seed)
            for m in refit:
                m.reset_parameters()
        with torch.enable_grad():
            for p in params:
                p.requires_grad_(True)
            optimiser = torch.optim.AdamW(params, lr=3e-3, weight_decay=1e-2)
            for _ in range(steps):
                idx = torch.randint(len(x), (REFIT_BATCH,), generator=generator)
                logits = model(x[idx]) if features is None else refit[0](features[idx])
                loss = F.cross_entropy(logits, y[idx])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        for p in params:
            p.requires_grad_(False)  # the tools ask no gradient of the weights (the restore below sets it too)
        yield model
    finally:
        with torch.no_grad():
            for p, value in zip(params, saved, strict=True):
                p.copy_(value)
                p.requires_grad_(False)
