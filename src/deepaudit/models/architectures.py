"""Small classifiers for 1-D and 2-D inputs. Each names its layers so that tools can capture
them by name, and ends in a linear layer called ``head`` whose input is the penultimate
representation."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

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
        if len(input_shape) not in (2, 3) or min(input_shape[1:]) < 2:
            raise ValueError(f"a cnn takes inputs (channels, length) or (channels, height, width) of at least 2 "
                             f"per spatial axis, not {tuple(input_shape)}")
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


# A card-built classifier is small; a card asking for more is an attempt to exhaust memory.
MAX_PARAMETERS = 250_000_000  # 1 GB of float32
MAX_SIZE = 2**31 - 1


def check_size(name: str, value: object) -> int:
    """``value`` as a size: a positive integer (not a bool or a float) no larger than
    ``MAX_SIZE``; anything else is a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
        raise ValueError(f"{name} must be a positive integer (at most {MAX_SIZE}), got {value!r}")
    return value


def check_shape(name: str, value: object) -> tuple[int, ...]:
    """``value`` as a non-empty list of sizes (see ``check_size``)."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"{name} must be a non-empty list of positive integers, got {value!r}")
    return tuple(check_size(f"{name}[{i}]", v) for i, v in enumerate(value))


def build_model(arch: str, input_shape: Sequence[int], num_classes: int, **kwargs: int) -> nn.Module:
    """Instantiate a registered architecture with random weights. Every size is checked, and the
    model is first built on the meta device (no memory) to refuse more than ``MAX_PARAMETERS``;
    under ``torch.device("meta")`` that skeleton is what is returned."""
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; registered: {sorted(ARCHITECTURES)}")
    factory = ARCHITECTURES[arch]
    shape = check_shape("input_shape", input_shape)
    check_size("num_classes", num_classes)
    takes = list(inspect.signature(factory).parameters)[2:]
    unknown = sorted(set(kwargs) - set(takes))
    if unknown:
        raise ValueError(f"architecture {arch!r} takes no arch_kwargs {unknown}; it takes {takes}")
    for name, value in kwargs.items():
        check_size(f"arch_kwargs {name}", value)
    try:
        with torch.device("meta"):
            skeleton = factory(shape, num_classes, **kwargs)
    except (RuntimeError, OverflowError) as exc:  # torch refuses sizes whose product overflows
        raise ValueError(f"architecture {arch!r} cannot be built with these sizes: {exc}") from exc
    count = sum(p.numel() for p in skeleton.parameters())
    if count > MAX_PARAMETERS:
        raise ValueError(f"these sizes give a {arch} of {count:,} parameters, more than the {MAX_PARAMETERS:,} "
                         f"deepaudit builds from a card")
    if torch.get_default_device().type == "meta":
        return skeleton
    return factory(shape, num_classes, **kwargs)


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
