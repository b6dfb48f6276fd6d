"""Findings that several tools need (a recovered trigger; cached activations), kept once per
organism. A finding is computed on first request (for a recovered trigger: by the tool the
registry names as its provider, with its default settings, ``deepaudit.tools.findings``) on a
subject of its own, so its forward passes and seconds are charged once, to the finding, and
shown apart from each tool's own cost; the tools that used it are listed beside it. A finding
whose computation failed is remembered as failed, not computed again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cost:
    """Seconds (wall clock, and CPU time over all threads) and examples forwarded."""

    wall_s: float = 0.0
    forward_passes: int = 0
    cpu_s: float = 0.0

    def to_json(self) -> dict[str, float]:
        return {"wall_s": round(self.wall_s, 6), "forward_passes": int(self.forward_passes),
                "cpu_s": round(self.cpu_s, 6)}


@dataclass
class Findings:
    """name -> value, with each finding's cost. ``subject_factory`` makes a fresh subject of the
    same organism to compute a finding on (None: compute on the asking subject)."""

    seed: int = 0
    subject_factory: Callable[[], Any] | None = None
    values: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    cost: dict[str, Cost] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    busy_s: float = 0.0  # seconds spent computing findings, all of them
    busy_cpu_s: float = 0.0  # and the CPU time they took

    def put(self, name: str, value: Any, cost: Cost | None = None) -> None:
        self.values[name] = value
        self.cost[name] = cost or Cost()

    @contextmanager
    def watch(self) -> Iterator[set[str]]:
        """Within the block, collect the names of the findings used (yielded set), so that the
        caller can charge a tool its own cost and list the shared costs apart."""
        self.used = set()
        yield self.used
