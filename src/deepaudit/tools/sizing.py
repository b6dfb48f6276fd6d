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

    def steps(self, per_step: float, least: int, most: int = 300, what: str = "steps") -> dict[str, int]:
        """As many optimisation steps (up to ``most``) as fit at ``per_step`` seconds each;
        ``TooLittleTime`` when even ``least`` do not (the message names ``what`` they are)."""
        steps = int(min(most, self.seconds / per_step))
        if steps < least:
            raise TooLittleTime(f"needs about {least * per_step:.1f} s for {least} {what}; "
                                f"{self.seconds:.1f} s left (raise --budget)")
        return {"steps": steps}

    def per_step(self, batch: int = 32) -> float:
        """Seconds of one optimisation step over a batch per class (forward and backward)."""
        return 3 * self.classes * batch * self.seconds_per_example
