"""Weights only, no data: the output layer's per-class weight norms. Poisoning pushes the
target class's row of the final linear layer away from the others (the "trojan signature" of
Fields et al., 2021); the MAD anomaly index of the largest norm scores it."""

from __future__ import annotations

import numpy as np
from torch import nn

from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict, anomaly_index, squash
from deepaudit.tools.registry import register_tool


@register_tool("weight_stats", roles=("detect",), families=("vision",), audit_share=0.02)
class WeightStats:

    def __init__(self, seed: int = 0, threshold: float = 2.0):
        self.threshold = threshold

    def audit(self, subject: Subject) -> Verdict:
        linear = [m for m in subject.model.modules() if isinstance(m, nn.Linear)]
        if not linear:
            raise ValueError("weight_stats needs a final nn.Linear layer")
        head = linear[-1]
        norms = head.weight.detach().norm(dim=1).numpy()
        index = anomaly_index(norms, low=False)
        return Verdict(p_planted=squash(index, self.threshold), target=int(norms.argmax()),
                       evidence={"anomaly_index": round(index, 4), "row_norms": np.round(norms, 4).tolist()})
