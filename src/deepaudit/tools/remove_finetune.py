"""Fine-tuning (the BackdoorBench "FT" defence): train every weight on the clean budget for a
few epochs with a raised learning rate, hoping that the backdoor, unused by clean inputs,
is overwritten. Needs no trigger and no detection."""

from __future__ import annotations

from torch import nn

from deepaudit.subject import Subject
from deepaudit.tools.editing import editable_copy, fit
from deepaudit.tools.registry import register_tool


@register_tool("finetune", roles=("remove",), families=("vision",), audit_share=0.0)
class FineTune:

    def __init__(self, seed: int = 0, epochs: int = 5, lr: float = 2e-3, batch_size: int = 32):
        self.seed, self.epochs, self.lr, self.batch_size = seed, epochs, lr, batch_size

    def remove(self, subject: Subject) -> nn.Module:
        model = editable_copy(subject)
        return fit(model, subject.clean_x, subject.clean_y, self.epochs, self.lr, self.seed, self.batch_size)
