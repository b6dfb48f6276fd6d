"""A supervised combination of detectors (stacked generalisation, Wolpert 1992), marked as a
skyline: each model becomes the vector of its detectors' answers (P(planted), the calibrated
p-value and the anomaly index where a detector gives them, and whether it was inconclusive), and
the referee cross-fits a logistic-regression meta-classifier on other organisms' labels
(``deepaudit.game.skyline``). No real auditor has labelled organisms: it says how much a learned
weighting of the same detectors could add over the unsupervised ``combine_fisher``. Its parts'
verdicts are shared findings, so in the game its cost is the sum of theirs."""

from __future__ import annotations

import numpy as np

from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict
from deepaudit.tools.findings import verdict_of
from deepaudit.tools.registry import register_tool

STEPPED = ("neural_cleanse", "nc_reference", "nc_rehead", "mm_bd")  # searches: ``steps`` sizes them
PARTS = ("neural_cleanse", "nc_reference", "nc_rehead", "mahalanobis", "weight_stats", "mntd", "mm_bd")


def answer_features(verdict: Verdict) -> list[float]:
    """One detector's answer as numbers: P(planted), -log10 p-value, anomaly index, raw score,
    inconclusive (0 where the detector gives no such number)."""
    evidence = verdict.evidence
    return [verdict.p_planted, -float(np.log10(max(float(evidence.get("p_value", 1.0)), 1e-12))),
            float(evidence.get("anomaly_index", 0.0)), float(evidence.get("score", 0.0)),
            float("inconclusive" in evidence)]


@register_tool("combine_stack", roles=("features",), families=("vision",), kind="skyline",
               needs=("continuous_inputs",), audit_share=0.0, version=2)
class CombineStack:

    def __init__(self, seed: int = 0, steps: int = 300, mntd_shadows: int = 64):
        self.seed, self.steps = seed, steps  # steps: of the parts that search for triggers
        self.mntd_shadows = mntd_shadows

    def features(self, subject: Subject) -> np.ndarray:
        def verdict(part: str) -> Verdict:
            params = {"steps": self.steps} if part in STEPPED else {"shadows": self.mntd_shadows} if part == "mntd" else {}
            return verdict_of(subject, part, self.seed, **params)
        return np.array([x for part in PARTS for x in answer_features(verdict(part))])
