"""Layer conductance with Captum (Dhamdhere et al. 2018): integrated gradients through each
hidden unit along the straight path from a clean input (the baseline) to the same input
under the organism's recovered trigger (a shared finding: Neural Cleanse's), for the
recovered target's logit. A unit's conductance, summed over positions and averaged over
inputs, is its share of the trigger's push towards the target; the largest rank first."""

from __future__ import annotations

from captum.attr import LayerConductance

from deepaudit.internals.ablation import Unit, activation_layers
from deepaudit.subject import Subject
from deepaudit.tools.editing import per_unit, rank, recovered_pairs
from deepaudit.tools.registry import register_tool


@register_tool("captum_conductance", roles=("localize",), families=("vision",),
               needs=("continuous_inputs", "trigger"), version=2)
class CaptumConductance:

    def __init__(self, seed: int = 0, inputs: int = 32, n_steps: int = 16):
        self.seed, self.inputs, self.n_steps = seed, inputs, n_steps

    def localize(self, subject: Subject) -> list[Unit]:
        pairs = recovered_pairs(subject, n=self.inputs)
        model = subject.model
        modules = dict(model.named_modules())
        scores: dict[Unit, float] = {}
        for layer in activation_layers(model):
            conductance = LayerConductance(model, modules[layer]).attribute(
                pairs.triggered, baselines=pairs.clean, target=pairs.target, n_steps=self.n_steps)
            for i, value in enumerate(per_unit(conductance.detach()).mean(0).tolist()):
                scores[(layer, i)] = value
        return rank(scores)
