"""Neural Cleanse unlearning (Wang et al., S&P 2019, section VI.C): take the trigger Neural
Cleanse recovered (the organism's shared finding); if a class is flagged, stamp the recovered
trigger on a share of the clean budget, keep the true labels, and fine-tune, so the model
unlearns the shortcut. A model that Neural Cleanse does not flag is returned unchanged (as
in BackdoorBench)."""

from __future__ import annotations

import torch
from torch import nn

from deepaudit.subject import Subject
from deepaudit.tools.editing import editable_copy, fit
from deepaudit.tools.findings import shared
from deepaudit.tools.registry import register_tool
from deepaudit.triggers import input_trigger


@register_tool("nc_unlearn", roles=("remove",), families=("vision",), needs=("continuous_inputs", "trigger"),
               version=2, audit_share=0.0)
class NeuralCleanseUnlearn:
    def __init__(self, seed: int = 0, stamp_fraction: float = 0.2, epochs: int = 10, lr: float = 1e-3,
                 batch_size: int = 32):
        self.seed, self.stamp_fraction = seed, stamp_fraction
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size

    def remove(self, subject: Subject) -> nn.Module:
        recovered = shared(subject, "trigger")
        model = editable_copy(subject)
        if recovered.p_planted < 0.5 or recovered.trigger is None:
            return model.eval()
        x, y = subject.clean_x.clone(), subject.clean_y
        gen = torch.Generator().manual_seed(self.seed)
        stamped = torch.randperm(len(x), generator=gen)[: int(round(self.stamp_fraction * len(x)))]
        x[stamped] = input_trigger(recovered.trigger).apply(x[stamped])
        return fit(model, x, y, self.epochs, self.lr, self.seed, self.batch_size)
