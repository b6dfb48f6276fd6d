"""Scores of one fact edit, after ROME's CounterFact measures, on the built-in facts (the edit
track averages them over edits, with bootstrap CIs):

- efficacy: the edit prompt gives the new object a higher probability than the old one
  (per edit, 0 or 1); top-1: the new object is the greedy answer;
- paraphrase efficacy (generalisation): the same on the relation's paraphrase prompts
  (per edit, the share of paraphrases);
- specificity: the share of the *other* facts (every fact about a different subject) whose
  greedy answer is unchanged by the edit; also on the facts of the same relation only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from deepaudit.lm.facts import EditError, EditRequest, Fact, greedy_answers, target_id
from deepaudit.lm.loader import LanguageModel

METRICS = ("efficacy", "top1", "paraphrase", "specificity", "specificity_same_relation")


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
