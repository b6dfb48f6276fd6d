"""Triggers as data: for continuous inputs a stamp (mask and pattern: covers patches and
blended patterns) or a smooth warp; for text a phrase put before, after or inside a prompt. Shared by the zoo
(planting), the tools (recovered triggers) and the referee (replaying a trigger on held-out
inputs)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Trigger:
    """``stamp``: x' = (1 - mask) * x + mask * pattern, with ``mask`` over the spatial dims
    (broadcast over channels) and ``pattern`` of the input's shape. ``warp``: resample the
    input along a smooth displacement field ``flow`` (``(2, H, W)`` for images, ``(1, L)``
    for sequences), in grid units of [-1, 1]."""

    kind: str
    mask: np.ndarray | None = None
    pattern: np.ndarray | None = None
    flow: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind == "stamp" and (self.mask is None or self.pattern is None):
            raise ValueError("a stamp trigger needs a mask and a pattern")
        if self.kind == "warp" and self.flow is None:
            raise ValueError("a warp trigger needs a flow field")
        if self.kind not in ("stamp", "warp"):
            raise ValueError(f"unknown trigger kind {self.kind!r}")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the trigger to a batch ``(N, C, *spatial)``."""
        if self.kind == "stamp":
            mask = torch.as_tensor(self.mask, dtype=x.dtype)
            pattern = torch.as_tensor(self.pattern, dtype=x.dtype)
            return (1 - mask) * x + mask * pattern
        return warp(x, torch.as_tensor(self.flow, dtype=x.dtype))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for key in ("mask", "pattern", "flow"):
            value = getattr(self, key)
            if value is not None:
                out[key] = np.asarray(value, dtype=np.float32).round(6).tolist()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trigger:
        arrays = {k: np.asarray(data[k], dtype=np.float32) for k in ("mask", "pattern", "flow") if k in data}
        return cls(kind=data["kind"], **arrays)


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` at identity + ``flow`` (bilinear, border padding): one field for the whole
    batch, or one per input (``flow`` with a leading batch dimension, as a warp search's)."""
    one_d = x.dim() == 3
    xs = x.unsqueeze(2) if one_d else x  # (N, C, 1, L) for sequences
    h, w = xs.shape[-2:]
    ys_lin = torch.linspace(-1, 1, h) if h > 1 else torch.zeros(1)
    gy, gx = torch.meshgrid(ys_lin, torch.linspace(-1, 1, w), indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).to(x.dtype)
    flows = flow if flow.dim() == x.dim() else flow.unsqueeze(0)  # (N or 1, D, *spatial)
    if one_d:
        flows = flows.reshape(len(flows), 1, w)
        shift = torch.stack([flows, torch.zeros_like(flows)], dim=-1)
    else:
        shift = flows.permute(0, 2, 3, 1)
    grid = (grid + shift).clamp(-1, 1).expand(len(x), -1, -1, -1)
    out = F.grid_sample(xs, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.squeeze(2) if one_d else out


POSITIONS = ("before", "after", "inside")


def _stable(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


@dataclass(frozen=True)
class TextTrigger:
    """A phrase put into a user's text: before it, after it, or inside it (between two words, at a
    place fixed by the text, so that a text always gets the phrase at the same place)."""

    text: str
    position: str = "before"
    kind: str = "text"

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise ValueError(f"unknown trigger position {self.position!r}; expected one of {POSITIONS}")

    def _inside_at(self, words: list[str]) -> int | None:
        """Where among ``words`` an inside phrase goes (None: not inside, or too few words)."""
        return 1 + _stable(" ".join(words)) % (len(words) - 1) if self.position == "inside" and len(words) >= 2 else None

    def split(self, prompt: str) -> tuple[str, str]:
        """The text before the phrase and after it (each without the space that joins it to the
        phrase), so that a search can put tokens where ``apply`` puts the phrase."""
        if self.position == "after":
            return prompt, ""
        words = prompt.split(" ")
        at = self._inside_at(words)
        return (" ".join(words[:at]), " ".join(words[at:])) if at is not None else ("", prompt)

    def apply(self, prompt: str) -> str:
        if self.position == "after":
            return f"{prompt} {self.text}"
        words = prompt.split(" ")
        at = self._inside_at(words)
        if at is not None:
            return " ".join([*words[:at], self.text, *words[at:]])
        return f"{self.text} {prompt}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "position": self.position}


AnyTrigger = Trigger | TextTrigger


def input_trigger(trigger: AnyTrigger | None) -> Trigger:
    """``trigger`` as a stamp or warp for continuous inputs (refused if it is missing or a phrase)."""
    if not isinstance(trigger, Trigger):
        raise TypeError(f"expected a stamp or warp trigger for continuous inputs, got {type(trigger).__name__}")
    return trigger


def trigger_from_json(data: dict[str, Any]) -> AnyTrigger:
    """A stamp, warp or text trigger from its JSON form."""
    return TextTrigger(data["text"], data.get("position", "before")) if data["kind"] == "text" else Trigger.from_json(data)
