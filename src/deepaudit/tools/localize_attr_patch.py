"""Attribution patching (Nanda 2023; Syed et al. 2023): the first-order estimate of
activation patching from one forward and one backward pass. The effect of restoring unit u's
clean activation is approximated by (a_clean - a_triggered) * d logp(target) / d a at the
triggered input, summed over positions and averaged over inputs; units whose restoration
would most lower the recovered target's log-probability rank first."""

from __future__ import annotations

import torch

from deepaudit.internals import capture, run_with_cache
from deepaudit.internals.ablation import Unit, activation_layers
from deepaudit.subject import Subject
from deepaudit.tools.editing import per_unit, rank, recovered_pairs, target_logprob
from deepaudit.tools.registry import register_tool


@register_tool("attr_patch", roles=("localize",), families=("vision",), needs=("continuous_inputs", "trigger"),
               version=2)
class AttributionPatching:

    def __init__(self, seed: int = 0, inputs: int = 64):
        self.seed, self.inputs = seed, inputs

    def localize(self, subject: Subject) -> list[Unit]:
        pairs = recovered_pairs(subject, n=self.inputs)
        model, layers = subject.model, activation_layers(subject.model)
        _, clean = run_with_cache(model, pairs.clean, layers)
        x = pairs.triggered.clone().requires_grad_(True)  # the weights are frozen: grow the graph from x
        with capture(model, layers, detach=False) as triggered:
            metric = target_logprob(model(x), pairs.target)
        grads = torch.autograd.grad(metric, [triggered[layer] for layer in layers])
        scores: dict[Unit, float] = {}
        for layer, grad in zip(layers, grads):
            effect = per_unit((clean[layer] - triggered[layer].detach()) * grad)
            for i, value in enumerate(effect.mean(0).tolist()):
                scores[(layer, i)] = -value
        return rank(scores)
