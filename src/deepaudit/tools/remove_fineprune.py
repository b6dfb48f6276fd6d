"""Fine-pruning (Liu et al., RAID 2018): backdoor units tend to stay dormant on clean inputs,
so prune the units of the last hidden layer in increasing order of their mean clean
activation, as long as accuracy on a held-out part of the clean budget stays within
``max_drop`` of the original, then fine-tune the pruned model on the whole clean budget."""

from __future__ import annotations

import torch
from torch import nn

from deepaudit.internals import run_with_cache
from deepaudit.subject import Subject
from deepaudit.tools.editing import editable_copy, fit, make_permanent, prune_units, safe_prefix, split_budget
from deepaudit.tools.registry import register_tool


@register_tool("fineprune", roles=("remove",), families=("vision",), audit_share=0.0)
class FinePrune:

    def __init__(self, seed: int = 0, max_drop: float = 0.05, max_ratio: float = 0.9,
                 epochs: int = 5, lr: float = 1e-3, val_fraction: float = 0.25):
        self.seed, self.max_drop, self.max_ratio = seed, max_drop, max_ratio
        self.epochs, self.lr, self.val_fraction = epochs, lr, val_fraction

    def remove(self, subject: Subject) -> nn.Module:
        model = editable_copy(subject)
        layer = subject.feature_layer
        _, _, x_val, y_val = split_budget(subject, self.val_fraction, self.seed)
        _, cache = run_with_cache(model, subject.clean_x, [layer])
        act = cache[layer]
        mean = act.mean(dim=tuple(d for d in range(act.dim()) if d != 1))
        order = torch.argsort(mean).tolist()  # most dormant first
        ranked = [(layer, i) for i in order[: int(self.max_ratio * len(order))]]
        chosen = safe_prefix(model, ranked, x_val, y_val, self.max_drop)
        prune_units(model, chosen)
        fit(model, subject.clean_x, subject.clean_y, self.epochs, self.lr, self.seed)
        return make_permanent(model)
