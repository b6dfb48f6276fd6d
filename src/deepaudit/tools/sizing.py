"""How the audit sizes a tool to its share of a time budget: each tool's registration names a
function from an ``Allowance`` to the tool's parameters, which raises ``TooLittleTime`` when
even the least useful setting does not fit."""

from __future__ import annotations

from dataclasses import dataclass

from deepaudit.errors import DeepAuditError


class TooLittleTime(DeepAuditError):
    """The allowance cannot fit the tool's least useful setting (the message says how much would)."""


@dataclass(frozen=True)
class Allowance:
    """Seconds a tool may take, the model's measured seconds per forward example, the number of
    trusted inputs, and the model's output classes."""

    seconds: float
    seconds_per_example: float
    inputs: int
    classes: int

    def per_step(self, batch: int = 32) -> float:
        """Seconds of one optimisation step over a batch per class (forward and backward)."""
        return 3 * self.classes * batch * self.seconds_per_example
