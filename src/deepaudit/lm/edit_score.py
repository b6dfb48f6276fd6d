"""Scores for fact edits, after ROME's CounterFact measures, on the built-in facts:

- efficacy: the edit prompt gives the new object a higher probability than the old one
  (per edit, 0 or 1); top-1: the new object is the greedy answer;
- paraphrase efficacy (generalisation): the same on the relation's paraphrase prompts
  (per edit, the share of paraphrases);
- specificity: the share of the *other* facts (every fact about a different subject) whose
  greedy answer is unchanged by the edit; also on the facts of the same relation only.

Averages over edits come with percentile-bootstrap 95% intervals
(``deepaudit.game.metrics.mean_with_ci``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar, Protocol

import numpy as np
import torch
from rich.progress import Progress

from deepaudit.game.metrics import mean_with_ci
from deepaudit.lm.facts import EditRequest, Fact, greedy_answers
from deepaudit.lm.loader import LanguageModel
from deepaudit.tools.edit_rome import EditError, target_id

SCHEMA_VERSION = 1
METRICS = ("efficacy", "top1", "paraphrase", "specificity", "specificity_same_relation")


class FactEditor(Protocol):
    """Rewrites one fact and returns an edited copy of the model (the input stays unchanged)."""

    name: ClassVar[str]

    def edit(self, lm: LanguageModel, request: EditRequest) -> LanguageModel: ...


def others_of(request: EditRequest, facts: Sequence[Fact]) -> list[int]:
    """Indices of the facts about other subjects than the edited one."""
    return [i for i, f in enumerate(facts) if f.subject != request.subject]


@torch.no_grad()
def score_edit(lm: LanguageModel, request: EditRequest, facts: Sequence[Fact], before: Sequence[int]) -> dict[str, float]:
    """Efficacy, top-1, paraphrase efficacy and specificity of ``lm`` (an edited model) for
    ``request``; ``before`` are the unedited model's greedy answers to every fact's prompt."""
    if request.target_true is None:
        raise EditError(f"scoring the edit of {request.fact_id or request.subject!r} needs its old target")
    new, old = target_id(lm, request.target_new, "new target"), target_id(lm, request.target_true, "old target")
    prompts = [request.prompt] + [p.format(request.subject) for p in request.paraphrases]
    probs = lm.logits(prompts).softmax(-1)
    wins = (probs[:, new] > probs[:, old]).float()
    others = others_of(request, facts)
    after = greedy_answers(lm, [facts[i].prompt for i in others])
    kept = np.array([a == before[i] for a, i in zip(after, others)], dtype=float)
    same = np.array([facts[i].template == request.template for i in others])
    return {
        "efficacy": float(wins[0]),
        "top1": float(probs[0].argmax() == new),
        "paraphrase": float(wins[1:].mean()) if len(prompts) > 1 else float("nan"),
        "specificity": float(kept.mean()),
        "specificity_same_relation": float(kept[same].mean()) if same.any() else float("nan"),
        "p_new": float(probs[0, new]),
        "p_old": float(probs[0, old]),
    }


CellCallback = Callable[[str, EditRequest, dict[str, float], float], None]


def run_edit_bench(lm: LanguageModel, editors: Mapping[str, FactEditor], requests: Sequence[EditRequest],
                   facts: Sequence[Fact], seed: int = 0, progress: Progress | None = None,
                   on_cell: CellCallback | None = None) -> dict:
    """Apply every editor to every request, one edit at a time on the unedited model, and score
    each edited copy; ``on_cell(label, request, scores, wall_s)`` is called after each edit.
    Returns per-edit scores, their means with CIs per editor, and the unedited model's scores."""
    before = greedy_answers(lm, [f.prompt for f in facts])
    unedited = [score_edit(lm, r, facts, before) for r in requests]
    per_tool: dict[str, list[dict]] = {label: [] for label in editors}
    task = progress.add_task("edits", total=len(editors) * len(requests)) if progress else None
    for request in requests:
        for label, editor in editors.items():
            start = time.perf_counter()
            edited = editor.edit(lm, request)
            wall = time.perf_counter() - start
            scores = score_edit(edited, request, facts, before)
            del edited
            per_tool[label].append({"fact": request.fact_id, "target_new": request.target_new, "wall_s": wall, **scores})
            if on_cell:
                on_cell(label, request, scores, wall)
            if progress:
                progress.advance(task)
    return {
        "schema_version": SCHEMA_VERSION,
        "model": lm.source,
        "n_edits": len(requests),
        "seed": seed,
        "unedited": summarise(unedited),
        "tools": {label: {"summary": summarise(rows),
                          "mean_wall_s": float(np.mean([r["wall_s"] for r in rows])),
                          "first_wall_s": rows[0]["wall_s"] if rows else float("nan"),
                          "edits": rows}
                  for label, rows in per_tool.items()},
    }


def summarise(rows: Sequence[dict[str, float]], seed: int = 0) -> dict[str, dict[str, float]]:
    """Each metric's mean over edits with a bootstrap 95% interval."""
    return {m: mean_with_ci(np.array([r[m] for r in rows]), seed) for m in METRICS}
