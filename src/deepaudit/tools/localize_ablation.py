"""Ablation search: zero each hidden unit alone and measure how much the recovered trigger's
target log-probability falls, less how much the clean inputs' log-probability of their own
labels falls (a unit the task needs is no backdoor unit); then grow a set greedily from the
best ``candidates``, each time adding the unit that lowers that score most together with
those already chosen. Ranking: the greedy order, then the rest by their single-unit score."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepaudit.internals import intervene
from deepaudit.internals.ablation import Unit, all_units, zero_units
from deepaudit.subject import Subject
from deepaudit.tools.editing import Pairs, rank, recovered_pairs, target_logprob
from deepaudit.tools.registry import register_tool


@register_tool("ablation_search", roles=("localize",), families=("vision",), needs=("continuous_inputs", "trigger"),
               version=2)
class AblationSearch:

    def __init__(self, seed: int = 0, inputs: int = 32, candidates: int = 12,
                 greedy: int = 6, clean_weight: float = 1.0):
        self.seed, self.inputs = seed, inputs
        self.candidates, self.greedy, self.clean_weight = candidates, greedy, clean_weight

    @torch.no_grad()
    def _score(self, subject: Subject, pairs: Pairs, units: list[Unit]) -> float:
        """Target log-probability under the trigger minus the clean log-likelihood, with ``units`` zeroed."""
        with intervene(subject.model, zero_units(units)):
            backdoor = float(target_logprob(subject.model(pairs.triggered), pairs.target))
            task = -float(F.cross_entropy(subject.model(pairs.clean), pairs.labels))
        return backdoor - self.clean_weight * task

    def localize(self, subject: Subject) -> list[Unit]:
        pairs = recovered_pairs(subject, n=self.inputs)
        base = self._score(subject, pairs, [])
        single = {unit: base - self._score(subject, pairs, [unit]) for unit in all_units(subject.model, pairs.clean)}
        pool, chosen = rank(single)[: self.candidates], list[Unit]()
        for _ in range(min(self.greedy, len(pool))):
            best = max((u for u in pool if u not in chosen), key=lambda u: -self._score(subject, pairs, chosen + [u]))
            chosen.append(best)
        return chosen + [u for u in rank(single) if u not in chosen]
