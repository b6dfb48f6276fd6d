"""Interventions on a language model's residual stream that a tool may attach to a model it
returns, as data (so that the referee can replay them on its own copy of the model, across the
seal between tools and referee): directional mean-ablation at one decoder layer's output, the
refusal-direction edit of Arditi et al. 2024 ("Refusal in language models is mediated by a single
direction") applied to whatever direction a tool found."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ResidualAblation:
    """After the decoder layer named ``layer``, set the residual stream's component along the unit
    vector ``direction`` to ``level`` (its mean on clean prompts)."""

    layer: str
    direction: torch.Tensor
    level: float

    def attach(self, model: nn.Module) -> None:
        """Register the ablation as a forward hook on ``model``'s layer (in place)."""
        modules = dict(model.named_modules())
        if self.layer not in modules:
            raise ValueError(f"residual ablation at {self.layer!r}: the model has no such layer")
        direction, level = self.direction.to(torch.float32), float(self.level)
        if direction.ndim != 1 or not torch.isfinite(direction).all():
            raise ValueError(f"residual ablation at {self.layer!r}: the direction must be a finite vector")

        def ablate(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            hidden = output[0] if isinstance(output, tuple) else output
            hidden = hidden - ((hidden @ direction) - level).unsqueeze(-1) * direction
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        modules[self.layer].register_forward_hook(ablate)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "residual_ablation", "layer": self.layer, "direction": self.direction, "level": self.level}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResidualAblation:
        if data.get("kind") != "residual_ablation":
            raise ValueError(f"unknown intervention {data.get('kind')!r}")
        return cls(str(data["layer"]), torch.as_tensor(data["direction"], dtype=torch.float32), float(data["level"]))
