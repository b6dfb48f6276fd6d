"""A tool's answer for one role on one organism, and the referee's stopwatch."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    """A role's answer: ``value`` for the tracks (in memory), ``record`` for the store (JSON)."""

    value: Any
    record: dict[str, Any]


class Stopwatch:
    """Seconds spent inside ``running()`` blocks: the referee's own time inside a tool's turn."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def running(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start
