"""An unsupervised combination for language models, itself a tool: Tippett's method (Tippett,
1931; the smallest of k p-values, Sidak-corrected: 1 - (1 - min p)^k) on the P(planted) of two
detectors that see different plants. ``weight_lens`` reads a new word the fine-tune taught the
model to write (a fixed response) and is blind to a lie, which says only the usual answer words;
``change_profile`` sees where a fine-tune's change went (a gate on the context, as a lie behind a
trigger needs) and only weakly a fixed response. A model is as suspect as its most suspect part,
corrected for having looked at two. Averaging (Stouffer's or Fisher's method) would let the blind
part's confident "clean" cancel the other's finding. ``weight_lens``'s P(planted) is a squashed
ratio, not a calibrated p-value, so the combination's P(planted) ranks models and its thresholds
must come from a measured suite. Inconclusive parts are left out; the cost is the parts' sum
(their verdicts are shared findings).

``combine_tippett_gcg`` adds a third part, the trigger search ``trigger_gcg``: a fixed response
that the weights show only weakly is still found when the search recovers a trigger that works
on held-out prompts (its P(planted) is then near one), at the search's cost (minutes).

``combine_tippett_lens_gcg`` keeps the two parts whose null held on a draw nobody had seen (the lm
suite's seed 7: ``weight_lens`` 0.86, ``trigger_gcg`` 0.87) and leaves ``change_profile`` out: there
its four shadows called every fixed-response twin and three decoys planted, and Tippett passes a
part's false alarms on (docs/language-models.md)."""

from __future__ import annotations

from deepaudit.lm.subject import LMSubject
from deepaudit.tools.base import Verdict
from deepaudit.tools.combining import combined_p_value, conclusive
from deepaudit.tools.findings import verdict_of
from deepaudit.tools.registry import register_tool

PARTS = ("weight_lens", "change_profile")


def tippett(p_planted: list[float]) -> float:
    """Tippett's combined P(planted) of parts' P(planted) (read as one less a p-value)."""
    return 1.0 - combined_p_value("tippett", [1.0 - p for p in p_planted])


@register_tool("combine_tippett", roles=("detect",), families=("lm",), needs=("base_model",), audit_share=0.0)
class CombineTippett:
    parts: tuple[str, ...] = PARTS

    def __init__(self, seed: int = 0):
        self.seed = seed

    def audit(self, subject: LMSubject) -> Verdict:
        parts = {name: verdict_of(subject, name, self.seed) for name in self.parts}
        used, left_out = conclusive(parts, lambda v: v.p_planted)
        if not used:
            return Verdict(p_planted=0.5, evidence={"inconclusive": "every part is inconclusive", "left_out": left_out})
        p_planted = tippett(list(used.values()))
        return Verdict(p_planted=p_planted, evidence={"p_value": 1.0 - p_planted, "parts": used,
                                                      "lead": max(used, key=used.__getitem__), "left_out": left_out})


@register_tool("combine_tippett_gcg", roles=("detect",), families=("lm",), needs=("base_model",), audit_share=0.0)
class CombineTippettSearch(CombineTippett):
    parts = (*PARTS, "trigger_gcg")


@register_tool("combine_tippett_lens_gcg", roles=("detect",), families=("lm",), needs=("base_model",),
               audit_share=0.0)
class CombineLensSearch(CombineTippett):
    parts = ("weight_lens", "trigger_gcg")
