"""A small typed layer over PyTorch forward hooks, in the spirit of TransformerLens's hook
points but for any ``nn.Module``: capture the outputs of the named modules you ask for (and
only those), or replace them, and always remove the hooks, also after an exception.
``deepaudit.internals.traced`` captures the same tensors without hooks, for small models."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

Intervention = Callable[[torch.Tensor], torch.Tensor]


class ActivationCache(dict[str, torch.Tensor]):
    """Module name -> captured output. Concatenates across batches when captured repeatedly."""

    def add(self, name: str, value: torch.Tensor) -> None:
        self[name] = torch.cat([self[name], value]) if name in self else value


def module_names(model: nn.Module) -> list[str]:
    """Names of every submodule, in registration order (the names ``capture`` accepts)."""
    return [name for name, _ in model.named_modules() if name]


def _resolve(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules or not n]
    if missing:
        raise KeyError(f"no module named {missing} in {type(model).__name__}; "
                       f"available: {module_names(model)}")
    return {n: modules[n] for n in names}


@contextmanager
def capture(model: nn.Module, names: Sequence[str], detach: bool = True) -> Iterator[ActivationCache]:
    """Record the outputs of ``names`` during every forward pass inside the block.

    ``detach=False`` keeps the autograd graph, for tools that differentiate through activations.
    """
    cache = ActivationCache()
    handles = []

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> None:
            cache.add(name, output.detach() if detach else output)
        return hook

    try:
        for name, module in _resolve(model, names).items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield cache
    finally:
        for handle in handles:
            handle.remove()


def module_inputs(model: nn.Module, module: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], Any]:
    """The first positional input of every call of ``module`` while ``model`` reads ``x`` (without
    gradients), and the model's output: what a layer receives, for tools that start from there."""
    seen: list[torch.Tensor] = []
    hook = module.register_forward_pre_hook(lambda _module, inputs: seen.append(inputs[0]))
    try:
        with torch.no_grad():
            output = model(x)
    finally:
        hook.remove()
    return seen, output


@contextmanager
def intervene(model: nn.Module, interventions: Mapping[str, Intervention]) -> Iterator[None]:
    """Replace the output of each named module by ``fn(output)`` inside the block."""
    handles = []
    try:
        for name, module in _resolve(model, list(interventions)).items():
            fn = interventions[name]
            handles.append(module.register_forward_hook(lambda _m, _i, out, fn=fn: fn(out)))
        yield
    finally:
        for handle in handles:
            handle.remove()
