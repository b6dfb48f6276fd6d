"""An unsupervised combination of detectors, itself a tool: Fisher's method (Fisher, 1925) on the
calibrated p-values of the reference-judged detectors (``nc_reference``: clean shadows trained
from scratch; ``nc_rehead``: the model's own re-headed copy). Each part says how unlikely the
model's statistic is under its clean reference; -2 sum(log p) is chi-squared with 2k degrees of
freedom when every part's null holds, so the combination needs no weights and no labelled
organism. A part that says its reference does not fit this model (inconclusive) is left out.
Its cost is the sum of its parts': their verdicts are shared findings, computed once per
organism whether the parts or the combination ask first (``deepaudit.tools.findings.verdict_of``)."""

from __future__ import annotations

from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict
from deepaudit.tools.combining import combined_p_value, conclusive
from deepaudit.tools.findings import verdict_of
from deepaudit.tools.registry import register_tool, tool_spec
from deepaudit.tools.sizing import Allowance

SHARES = {"nc_reference": 0.4, "nc_rehead": 0.6}  # of the combination's allowance, by the parts' own cost


def fisher(p_values: list[float]) -> float:
    """Fisher's combined p-value of independent p-values."""
    return combined_p_value("fisher", p_values)


def size_to(allowance: Allowance) -> dict[str, int]:
    """The parts' common number of steps: the fewer that either part's sizing allows in its share."""
    steps = []
    for name, share in SHARES.items():
        sizing = tool_spec(name).sizing
        if sizing is not None:
            part = Allowance(allowance.seconds * share, allowance.seconds_per_example, allowance.inputs, allowance.classes)
            steps.append(int(sizing(part)["steps"]))
    return {"steps": min(steps)} if steps else {}


@register_tool("combine_fisher", roles=("detect",), families=("vision",), needs=("continuous_inputs",),
               audit_share=0.0, sizing=size_to)  # scored by the game; the audit's verdict is nc_contrast
class CombineFisher:
    parts: tuple[str, ...] = tuple(SHARES)

    def __init__(self, seed: int = 0, steps: int = 300):
        self.seed, self.steps = seed, steps

    def audit(self, subject: Subject) -> Verdict:
        parts = {name: verdict_of(subject, name, self.seed, steps=self.steps) for name in self.parts}
        used, left_out = conclusive(parts, lambda v: float(v.evidence["p_value"]))
        if not used:
            return Verdict(p_planted=0.5, evidence={"p_value": 1.0, "inconclusive": "no part has a fitting reference",
                                                    "left_out": left_out})
        p_value = fisher(list(used.values()))
        lead = min(used, key=used.__getitem__)
        return Verdict(p_planted=1.0 - p_value, target=parts[lead].target, trigger=parts[lead].trigger,
                       evidence={"p_value": p_value, "parts": used, "left_out": left_out})


@register_tool("combine_fisher_distill", roles=("detect",), families=("vision",), needs=("continuous_inputs",),
               audit_share=0.0)
class CombineFisherDistill(CombineFisher):
    """Fisher's method on the three reference-judged detectors: clean shadows, the re-headed copy
    and distilled students (``nc_distill``)."""

    parts = (*SHARES, "nc_distill")
