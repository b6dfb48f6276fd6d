"""edit: rewrite one stored fact of a language model (ROME's CounterFact measures, per edit):
efficacy (the new object beats the old on the edit prompt), top-1 (it is the greedy answer),
paraphrases (efficacy on the relation's other prompts), specificity (the share of facts about
other subjects whose greedy answer is unchanged; also within the edited relation). Each editor
rewrites the kit's facts one at a time on the unedited model; the metrics average over edits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deepaudit.game.answer import Answer
from deepaudit.game.tracks.base import Cell, Column, Track, register_track
from deepaudit.lm.edit_score import METRICS
from deepaudit.metrics import Metric, mean_with_ci
from deepaudit.zoo import Kit


@register_track
class Edit(Track):
    name = "edit"
    order = 30
    roles = ("edit",)
    kit_needs = ("requests", "score_edit")
    table = "fact editing"
    columns = (Column("efficacy", "efficacy", ci=True), Column("top-1", "top1", ci=True),
               Column("paraphrases", "paraphrase", ci=True), Column("specificity", "specificity", ci=True),
               Column("same relation", "specificity_same_relation", ci=True), Column("s/edit", "wall_s"))

    def score(self, answer: Answer, kit: Kit, seed: int) -> dict[str, Any] | None:
        return {"edits": answer.value}

    def aggregate(self, cells: Sequence[Cell], seed: int) -> dict[str, Metric]:
        edits = [row for c in cells for row in c["scores"]["edits"]]
        return {m: mean_with_ci([row[m] for row in edits], seed) for m in (*METRICS, "wall_s")}
