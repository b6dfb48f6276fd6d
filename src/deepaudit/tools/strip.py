"""STRIP (Gao et al., ACSAC 2019): superimpose an input on random trusted inputs; a triggered
input keeps its (target) prediction whatever it is blended with, so its prediction entropy
stays low. Score: minus the mean entropy over the blends."""

from __future__ import annotations

import numpy as np
import torch

from deepaudit.subject import Subject
from deepaudit.tools.registry import register_tool
from deepaudit.tools.sizing import Allowance, TooLittleTime


def size_to(allowance: Allowance) -> dict[str, int]:
    """As many overlays per input (up to 16) as fit."""
    per_overlay = allowance.inputs * allowance.seconds_per_example
    overlays = int(min(16, allowance.seconds / max(per_overlay, 1e-9)))
    if overlays < 4:
        raise TooLittleTime(f"needs about {4 * per_overlay:.1f} s for 4 overlays per input; "
                            f"{allowance.seconds:.1f} s left")
    return {"overlays": overlays}


@register_tool("strip", roles=("inputs",), families=("vision",), needs=("continuous_inputs",), audit_share=0.1,
               sizing=size_to)
class Strip:

    def __init__(self, seed: int = 0, overlays: int = 16, alpha: float = 0.5):
        self.seed, self.overlays, self.alpha = seed, overlays, alpha

    def fit(self, subject: Subject) -> Strip:
        self.subject = subject
        return self

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> np.ndarray:
        pool = self.subject.clean_x
        gen = torch.Generator().manual_seed(self.seed)
        picks = pool[torch.randint(len(pool), (self.overlays,), generator=gen)]
        blended = (1 - self.alpha) * x.unsqueeze(1) + self.alpha * picks.unsqueeze(0)  # (N, O, ...)
        probs = torch.softmax(self.subject.predict(blended.flatten(0, 1)), dim=1)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(1).view(len(x), -1).mean(1)
        return (-entropy).numpy()
