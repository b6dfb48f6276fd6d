"""The training monitor of every zoo organism: one monitor run per build attempt, recorded in
the results store. Cheap (norms, one forward pass of 256 clean inputs per epoch, a label probe
every 5th epoch) and read-only, so the weights built are the same with or without it."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from deepaudit.models import penultimate_layer
from deepaudit.monitor import Concept, Monitor

MONITOR_INPUTS = 256


def organism_monitor(store: Path, organism_id: str, attempt: int, model: nn.Module, x: torch.Tensor,
                     y: torch.Tensor) -> Monitor:
    """A monitor for one training of an organism: activation statistics and effective rank of
    its penultimate layer on the first clean training inputs, and a probe for their label."""
    layer = penultimate_layer(model)
    n = min(MONITOR_INPUTS, len(x))
    return Monitor(store, f"zoo:{organism_id}:{attempt}", kind="zoo",
                   meta={"organism_id": organism_id, "attempt": attempt}, inputs=x[:n], layers=[layer],
                   concepts=[Concept("label", layer, y[:n])], slow_every=5)
