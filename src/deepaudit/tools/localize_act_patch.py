"""Activation patching (causal tracing for units): run the inputs under the organism's
recovered trigger (a shared finding: Neural Cleanse's), and for each hidden unit in turn put
back its activation from the same clean input; the units whose restoration most lowers the
log-probability of the recovered target carry the backdoor. One forward pass per unit."""

from __future__ import annotations

import torch

from deepaudit.internals import intervene, run_with_cache
from deepaudit.internals.ablation import Unit, activation_layers
from deepaudit.subject import Subject
from deepaudit.tools.editing import rank, recovered_pairs, target_logprob
from deepaudit.tools.registry import register_tool


@register_tool("act_patch", roles=("localize",), families=("vision",), needs=("continuous_inputs", "trigger"),
               version=2)
class ActivationPatching:

    def __init__(self, seed: int = 0, inputs: int = 64):
        self.seed, self.inputs = seed, inputs

    @torch.no_grad()
    def localize(self, subject: Subject) -> list[Unit]:
        pairs = recovered_pairs(subject, n=self.inputs)
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
