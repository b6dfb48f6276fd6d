"""Small classifiers for 1-D and 2-D inputs. Each names its layers so that tools can capture
them by name, and ends in a linear layer called ``head`` whose input is the penultimate
representation."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from deepaudit.models.transformer import OneLayerTransformer


class MLP(nn.Module):
    """Flatten, two hidden ReLU layers, linear head."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: int = 128):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(math.prod(input_shape), hidden)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden // 2)
        self.act2 = nn.ReLU()
        self.head = nn.Linear(hidden // 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act2(self.fc2(self.act1(self.fc1(self.flatten(x))))))


class CNN(nn.Module):
    """Two convolutions (1-D or 2-D by input rank), a pooling, a hidden layer, linear head."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, channels: int = 16):
        super().__init__()
        conv, pool = (nn.Conv2d, nn.MaxPool2d) if len(input_shape) == 3 else (nn.Conv1d, nn.MaxPool1d)
        c_in = input_shape[0]
        self.conv1 = conv(c_in, channels, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = conv(channels, 2 * channels, 3, padding=1)
        self.act2 = nn.ReLU()
        self.pool = pool(2)
        self.flatten = nn.Flatten()
        flat = 2 * channels * math.prod(s // 2 for s in input_shape[1:])
        self.fc = nn.Linear(flat, 64)
        self.act3 = nn.ReLU()
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.act2(self.conv2(self.act1(self.conv1(x)))))
        return self.head(self.act3(self.fc(self.flatten(h))))


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "cnn": CNN, "transformer": OneLayerTransformer}


def build_model(arch: str, input_shape: tuple[int, ...], num_classes: int, **kwargs) -> nn.Module:
    """Instantiate a registered architecture with random weights."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; registered: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](tuple(input_shape), num_classes, **kwargs)


def penultimate_layer(model: nn.Module) -> str:
    """Name of the module whose output feeds the final linear layer (the usual feature layer)."""
    names = [name for name, _ in model.named_modules() if name]
    head = "head" if "head" in names else None
    if head is None:
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linear:
            raise ValueError("model has no linear layer; name the feature layer explicitly")
        head = linear[-1]
    idx = names.index(head)
    if idx == 0:
        raise ValueError("the final linear layer is the first module; there is no penultimate layer")
    return names[idx - 1]
