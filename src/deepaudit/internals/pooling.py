"""Max pooling on a channels-last copy while gradients flow: the same values, a faster kernel.

PyTorch's CPU kernel for max pooling with indices (what ``nn.MaxPool1d``/``nn.MaxPool2d`` run when
the input needs a gradient) is slow on contiguous NCHW inputs at the small sizes of the zoo's CNNs:
28-32% of a trigger search's CPU time on them (2.8 ms of a 10 ms forward and backward pass of 320
8x8 digits through the zoo's CNN, one thread, torch 2.13). The channels-last kernel finds the same
maxima ten times faster. ``channels_last_pooling`` runs a model's max-pool layers through it for the
length of a block: the forward pools a channels-last copy and returns the result in the usual
layout; the backward is PyTorch's own ``max_pool2d_with_indices_backward`` with the indices found,
so logits and gradients are bit for bit those of the plain layers (tested). Without a
gradient the layers run as usual (PyTorch's no-indices kernels are fast there)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Pair = tuple[int, int]


class _ChannelsLastMaxPool(torch.autograd.Function):
    """Max pooling of a 4-D input through the channels-last kernel, backward through the indices."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel: Pair, stride: Pair) -> torch.Tensor:
        out, indices = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), kernel, stride,
                                    return_indices=True)
        indices = indices.contiguous()
        ctx.save_for_backward(x, indices)
        ctx.kernel, ctx.stride = kernel, stride
        return out.contiguous()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        x, indices = ctx.saved_tensors
        grad_input = torch.ops.aten.max_pool2d_with_indices_backward(
            grad.contiguous(), x, list(ctx.kernel), list(ctx.stride), [0, 0], [1, 1], False, indices)
        return grad_input, None, None


def _pair(value: int | tuple[int, ...]) -> Pair:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


class _ChannelsLastMaxPool1d(nn.MaxPool1d):
    """``nn.MaxPool1d`` through the channels-last kernel while a gradient flows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad) or x.dim() != 3:
            return super().forward(x)
        kernel, stride = (1, _pair(self.kernel_size)[0]), (1, _pair(self.stride)[0])
        return _ChannelsLastMaxPool.apply(x.unsqueeze(2), kernel, stride).squeeze(2)


class _ChannelsLastMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` through the channels-last kernel while a gradient flows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad) or x.dim() != 4:
            return super().forward(x)
        return _ChannelsLastMaxPool.apply(x, _pair(self.kernel_size), _pair(self.stride))


FAST: dict[type[nn.Module], type[nn.Module]] = {nn.MaxPool1d: _ChannelsLastMaxPool1d, nn.MaxPool2d: _ChannelsLastMaxPool2d}


def _eligible(layer: nn.Module) -> bool:
    """PyTorch's own max-pool layer (not a subclass), with no padding, no dilation, floor mode and no
    indices returned."""
    if not isinstance(layer, nn.MaxPool1d | nn.MaxPool2d) or type(layer) not in FAST:
        return False
    return (not layer.return_indices and not layer.ceil_mode and _pair(layer.padding) == (0, 0)
            and _pair(layer.dilation) == (1, 1))


@contextmanager
def channels_last_pooling(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``model``'s plain max-pool layers pool through the channels-last kernel when
    a gradient flows (same values and gradients); they are put back after it, also after an
    exception (a copy made within keeps the faster layers: a valid module, the same numbers). Other
    layers, and max pooling written inline in a ``forward``, are left as they are."""
    layers = [(layer, type(layer)) for layer in model.modules() if _eligible(layer)]
    try:
        for layer, plain in layers:
            layer.__class__ = FAST[plain]  # as torch.nn.utils.parametrize injects behaviour: a subclass
        yield model
    finally:
        for layer, plain in layers:
            layer.__class__ = plain
