"""An unsupervised combination of four detectors that look at different things, itself a tool:
Stouffer's method (Stouffer et al., 1949) on each part's P(planted) read as one minus a p-value.
The parts: Neural Cleanse judged against clean shadows (``nc_reference``) and against the model's
re-headed copy (``nc_rehead``), the maximum-margin statistic (``mm_bd``: no trigger form assumed)
and the meta-classifier over jumbo shadows (``mntd``). Each z = Phi^-1(P(planted)); the
combination is Phi(sum z / sqrt(k)). Unlike Fisher's sum of log p-values (``combine_fisher``),
one part's overconfident p-value cannot decide alone: ``mntd``'s logistic output is no
calibrated p-value (and ``mm_bd``'s null is fitted on nine classes), so the thresholds come from a
measured suite (``deepaudit.verdicts``), not from its nominal p-value. Inconclusive parts are
left out; the cost is the sum of the parts' (their verdicts are shared findings)."""

from __future__ import annotations

from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict
from deepaudit.tools.combine_fisher import size_to
from deepaudit.tools.combining import combined_p_value, conclusive
from deepaudit.tools.findings import verdict_of
from deepaudit.tools.registry import register_tool

STEPPED = ("nc_reference", "nc_rehead", "mm_bd")  # searches: the combination's ``steps`` sizes them
PARTS = (*STEPPED, "mntd")


def stouffer(p_planted: list[float]) -> float:
    """Stouffer's combined P(planted) of parts' P(planted) (read as one less a p-value)."""
    return 1.0 - combined_p_value("stouffer", [1.0 - p for p in p_planted])


@register_tool("combine_stouffer", roles=("detect",), families=("vision",), needs=("continuous_inputs",),
               audit_share=0.0, sizing=size_to)  # scored by the game; the audit's verdict is nc_contrast
class CombineStouffer:
    parts: tuple[str, ...] = PARTS

    def __init__(self, seed: int = 0, steps: int = 300, mntd_shadows: int = 64):
        self.seed, self.steps, self.mntd_shadows = seed, steps, mntd_shadows

    def audit(self, subject: Subject) -> Verdict:
        parts = {name: verdict_of(subject, name, self.seed, **self._params(name)) for name in self.parts}
        used, left_out = conclusive(parts, lambda v: v.p_planted)
        if not used:
            return Verdict(p_planted=0.5, evidence={"inconclusive": "every part is inconclusive", "left_out": left_out})
        p_planted = stouffer(list(used.values()))
        lead = max(used, key=used.__getitem__)
        return Verdict(p_planted=p_planted, target=parts[lead].target, trigger=parts[lead].trigger,
                       evidence={"p_value": 1.0 - p_planted, "parts": used, "left_out": left_out})

    def _params(self, part: str) -> dict[str, int]:
        if part == "mntd":
            return {"shadows": self.mntd_shadows}
        return {"steps": self.steps}


@register_tool("combine_stouffer_distill", roles=("detect",), families=("vision",), needs=("continuous_inputs",),
               audit_share=0.0)
class CombineStoufferDistill(CombineStouffer):
    """The four parts and Neural Cleanse against distilled students (``nc_distill``)."""

    parts = (*PARTS, "nc_distill")


@register_tool("combine_stouffer_contrast", roles=("detect",), families=("vision",),
               needs=("continuous_inputs",), audit_share=0.0, version=6)  # nc_contrast's version: its answers are a part
class CombineStoufferContrast(CombineStouffer):
    """The four parts and Neural Cleanse contrasted with clean references (``nc_contrast``)."""

    parts = (*PARTS, "nc_contrast")
