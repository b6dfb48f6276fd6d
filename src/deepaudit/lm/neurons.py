"""MLP neurons of a causal LM as units for the localize track: neuron ``j`` of layer ``i`` is
input ``j`` of that layer's MLP down-projection (in a gated MLP, ``act(gate_j(x)) * up_j(x)``).
That product is no module's output, so these helpers hook the down-projection's input (a
forward pre-hook) instead of going through ``deepaudit.internals.capture``, which hooks outputs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from deepaudit.internals.ablation import Unit
from deepaudit.lm.activations import layer_names
from deepaudit.lm.loader import LanguageModel


def neuron_modules(lm: LanguageModel) -> list[str]:
    """Module names of every layer's MLP down-projection, whose inputs are the neurons."""
    return [f"{name}.mlp.down_proj" for name in layer_names(lm)]


def all_neurons(lm: LanguageModel) -> list[Unit]:
    """Every MLP neuron of the model, layer by layer."""
    modules = dict(lm.model.named_modules())
    return [(name, j) for name in neuron_modules(lm) for j in range(modules[name].in_features)]


def rank_neurons(modules: Sequence[str], scores: torch.Tensor) -> list[Unit]:
    """Every neuron of ``scores`` ``(len(modules), neurons)``, highest score first (stable)."""
    order = torch.argsort(-scores.flatten(), stable=True)
    width = scores.shape[1]
    return [(modules[int(i) // width], int(i) % width) for i in order]


@contextmanager
def _pre_hooks(lm: LanguageModel, hooks: dict[str, Callable]) -> Iterator[None]:
    modules = dict(lm.model.named_modules())
    missing = [name for name in hooks if name not in modules]
    if missing:
        raise ValueError(f"no module {missing[0]!r} in the model (neuron units name MLP down-projections)")
    handles = [modules[name].register_forward_pre_hook(hook) for name, hook in hooks.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_neurons(lm: LanguageModel, modules: Sequence[str], detach: bool = True
                    ) -> Iterator[dict[str, torch.Tensor]]:
    """Record the neuron activations ``(batch, positions, neurons)`` entering each named
    down-projection during the forward pass inside the block (the last pass wins)."""
    cache: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(_module: nn.Module, args: tuple) -> None:
            cache[name] = args[0].detach() if detach else args[0]
        return hook

    with _pre_hooks(lm, {name: record(name) for name in modules}):
        yield cache


@contextmanager
def zero_neurons(lm: LanguageModel, units: Iterable[Unit]) -> Iterator[None]:
    """Zero the given neurons at every position during the forward passes inside the block."""
    by_module: dict[str, list[int]] = defaultdict(list)
    for name, index in units:
        by_module[name].append(int(index))

    def zero(indices: list[int]):
        def hook(_module: nn.Module, args: tuple) -> tuple:
            hidden = args[0].clone()
            hidden[..., indices] = 0
            return (hidden, *args[1:])
        return hook

    with _pre_hooks(lm, {name: zero(indices) for name, indices in by_module.items()}):
        yield
