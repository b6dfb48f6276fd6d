"""Activation patching (causal tracing for units): run the inputs under the trigger that
Neural Cleanse recovers, and for each hidden unit in turn put back its activation from the
same clean input; the units whose restoration most lowers the log-probability of the
recovered target carry the backdoor. One forward pass per unit."""

from __future__ import annotations

from typing import ClassVar

import torch

from deepaudit.internals import intervene, run_with_cache
from deepaudit.internals.ablation import Unit, activation_layers
from deepaudit.subject import Subject
from deepaudit.tools.editing import rank, recovered_pairs, target_logprob


class ActivationPatching:
    name: ClassVar[str] = "act_patch"

    def __init__(self, seed: int = 0, nc_steps: int = 50, inputs: int = 64):
        self.seed, self.nc_steps, self.inputs = seed, nc_steps, inputs

    @torch.no_grad()
    def localize(self, subject: Subject) -> list[Unit]:
        pairs = recovered_pairs(subject, self.seed, self.nc_steps, n=self.inputs)
        model, layers = subject.model, activation_layers(subject.model)
        _, clean = run_with_cache(model, pairs.clean, layers)
        base = float(target_logprob(model(pairs.triggered), pairs.target))
        scores: dict[Unit, float] = {}
        for layer in layers:
            for i in range(clean[layer].shape[1]):
                def restore(out: torch.Tensor, layer: str = layer, i: int = i) -> torch.Tensor:
                    out = out.clone()
                    out[:, i] = clean[layer][:, i]
                    return out
                with intervene(model, {layer: restore}):
                    scores[(layer, i)] = base - float(target_logprob(model(pairs.triggered), pairs.target))
        return rank(scores)
