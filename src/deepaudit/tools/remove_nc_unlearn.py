"""Neural Cleanse unlearning (Wang et al., S&P 2019, section VI.C): reverse-engineer the
trigger with Neural Cleanse; if a class is flagged, stamp the recovered trigger on a share of
the clean budget, keep the true labels, and fine-tune, so the model unlearns the shortcut.
A model that Neural Cleanse does not flag is returned unchanged (as in BackdoorBench)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from deepaudit.subject import Subject
from deepaudit.tools.editing import editable_copy, fit, recover_trigger


class NeuralCleanseUnlearn:
    name: ClassVar[str] = "nc_unlearn"

    def __init__(self, seed: int = 0, nc_steps: int = 100, nc_batch: int = 16, stamp_fraction: float = 0.2, epochs: int = 10,
                 lr: float = 1e-3, batch_size: int = 32):
        self.seed, self.nc_steps, self.nc_batch, self.stamp_fraction = seed, nc_steps, nc_batch, stamp_fraction
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size

    def remove(self, subject: Subject) -> nn.Module:
        recovered = recover_trigger(subject, self.seed, self.nc_steps, self.nc_batch)
        model = editable_copy(subject)
        if recovered.p_planted < 0.5:
            return model.eval()
        x, y = subject.clean_x.clone(), subject.clean_y
        gen = torch.Generator().manual_seed(self.seed)
        stamped = torch.randperm(len(x), generator=gen)[: int(round(self.stamp_fraction * len(x)))]
        x[stamped] = recovered.trigger.apply(x[stamped])
        return fit(model, x, y, self.epochs, self.lr, self.seed, self.batch_size)
