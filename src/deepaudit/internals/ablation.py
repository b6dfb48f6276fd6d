"""Units (one neuron or channel of a named module's output) and their zero-ablation, shared by
the localizers (which rank units) and the referee (which ablates the top-ranked ones)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from deepaudit.internals.capture import Intervention, capture

Unit = tuple[str, int]  # (module name, index along the output's channel dimension 1)


def activation_layers(model: nn.Module) -> list[str]:
    """Names of the model's ReLU modules: the hidden units that localizers rank."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.ReLU)]


@torch.no_grad()
def layer_widths(model: nn.Module, layers: Sequence[str], example: torch.Tensor) -> dict[str, int]:
    """Channel count (dimension 1) of each named module's output, from one forward of ``example``."""
    with capture(model, layers) as cache:
        model(example[:1])
    return {name: int(cache[name].shape[1]) for name in layers}


def all_units(model: nn.Module, example: torch.Tensor, layers: Sequence[str] | None = None) -> list[Unit]:
    """Every unit of ``layers`` (default: every ReLU), in layer then index order."""
    widths = layer_widths(model, list(layers) if layers is not None else activation_layers(model), example)
    return [(name, i) for name, width in widths.items() for i in range(width)]


def zero_units(units: Iterable[Unit]) -> dict[str, Intervention]:
    """Interventions for ``deepaudit.internals.intervene`` that zero the given units."""
    by_layer: dict[str, list[int]] = defaultdict(list)
    for name, index in units:
        by_layer[name].append(int(index))

    def zero(indices: list[int]) -> Intervention:
        def fn(out: torch.Tensor) -> torch.Tensor:
            out = out.clone()
            out[:, indices] = 0
            return out
        return fn

    return {name: zero(indices) for name, indices in by_layer.items()}
