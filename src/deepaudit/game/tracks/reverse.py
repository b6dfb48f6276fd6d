"""reverse: a replacement program with no neural network in it, for a model of a known task.
Scored on every input: agreement of the program's answers with the model's (the primary
score), both their accuracies on the task, and the Jaccard overlap of the program's
frequencies with the key frequencies the builder measured (sealed in the truth)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from deepaudit.game.answer import Answer
from deepaudit.game.tracks.base import Cell, Column, Track, mean_of, register_track
from deepaudit.metrics import Metric
from deepaudit.zoo import Kit


@register_track
class Reverse(Track):
    name = "reverse"
    order = 41
    roles = ("reverse",)
    kit_needs = ("original", "all_inputs", "key_frequencies")
    table = "training runs"
    columns = (Column("agreement", "agreement", ci=True), Column("program acc", "program_accuracy"),
               Column("model acc", "model_accuracy"), Column("frequency Jaccard", "frequency_jaccard"))

    def score(self, answer: Answer, kit: Kit, seed: int) -> dict[str, Any] | None:
        k: Any = kit
        pairs, truth = k.all_inputs()
        program_out = answer.value["outputs"]
        with torch.no_grad():
            model_out = k.original(torch.from_numpy(pairs)).argmax(1).numpy()
        found, keys = set(answer.value["frequencies"]), set(k.key_frequencies)
        return {"agreement": float(np.mean(program_out == model_out)),
                "program_accuracy": float(np.mean(program_out == truth)),
                "model_accuracy": float(np.mean(model_out == truth)),
                "frequencies_found": len(found), "true_key_frequencies": len(keys),
                "frequency_jaccard": len(found & keys) / max(1, len(found | keys))}

    def aggregate(self, cells: Sequence[Cell], seed: int) -> dict[str, Metric]:
        return {key: mean_of(cells, key, seed) for key in ("agreement", "program_accuracy", "model_accuracy",
                                                            "frequency_jaccard")}
