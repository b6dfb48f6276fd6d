"""A tool's answer for one role on one organism, as the referee's tracks read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    """A role's answer: ``value`` for the tracks (rebuilt on the referee's side), ``record`` for the store (JSON)."""

    value: Any
    record: dict[str, Any]
