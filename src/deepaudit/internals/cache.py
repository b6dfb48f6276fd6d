"""Run a model on a batch and keep the activations of the named modules: through the torch.fx
trace where the model allows it (``deepaudit.internals.traced``: no hook calls, the same
tensors), else through forward hooks (``deepaudit.internals.capture``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepaudit.internals.capture import ActivationCache, capture
from deepaudit.internals.traced import zoo_traced


@torch.no_grad()
def run_with_cache(model: nn.Module, x: torch.Tensor, names: Sequence[str],
                   batch_size: int = 512) -> tuple[torch.Tensor, ActivationCache]:
    """Forward ``x`` in batches; return the logits and the captured activations of ``names``.

    The zoo's architectures run as a torch.fx graph that returns the activations
    (``deepaudit.internals.traced``: no hook calls, the same tensors); other models, and models
    carrying hooks that the graph would skip, are captured through forward hooks."""
    run = zoo_traced(model, names)
    if run is not None and len(x) <= batch_size:
        return run(x)
    batches = [x[start : start + batch_size] for start in range(0, len(x), batch_size)]
    outputs: list[torch.Tensor] = []
    if run is None:
        with capture(model, names) as cache:
            outputs = [model(batch) for batch in batches]
        return torch.cat(outputs), cache
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in batches:
        output, acts = run(batch)
        outputs.append(output)
        for name, act in acts.items():
            parts.setdefault(name, []).append(act)
    return torch.cat(outputs), ActivationCache({name: torch.cat(part) for name, part in parts.items()})
