"""Adversarial neuron pruning (Wu & Wang, NeurIPS 2021): backdoor neurons are the ones whose
small perturbation flips predictions. Learn a mask m in [0, 1] over every hidden unit,
minimising  alpha * CE(m) + (1 - alpha) * CE(m + delta)  on the clean budget, where delta in
[-eps, eps] is the adversarial multiplicative perturbation (one signed-gradient ascent step
per batch). Then prune the units whose mask fell below ``threshold``, lowest mask first, for
as long as accuracy on a held-out quarter of the budget stays within ``max_drop`` (on these
small models a bare threshold prunes far too much)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepaudit.internals import intervene
from deepaudit.internals.ablation import activation_layers, layer_widths
from deepaudit.subject import Subject
from deepaudit.tools.editing import editable_copy, make_permanent, prune_units, safe_prefix, split_budget
from deepaudit.tools.registry import register_tool


@register_tool("anp", roles=("remove",), families=("vision",), audit_share=0.0)
class AdversarialNeuronPruning:

    def __init__(self, seed: int = 0, steps: int = 100, eps: float = 0.4, alpha: float = 0.2,
                 lr: float = 0.2, threshold: float = 0.2, batch_size: int = 64, max_drop: float = 0.02,
                 val_fraction: float = 0.25):
        self.seed, self.steps, self.eps, self.alpha = seed, steps, eps, alpha
        self.lr, self.threshold, self.batch_size = lr, threshold, batch_size
        self.max_drop, self.val_fraction = max_drop, val_fraction

    def masks(self, model: nn.Module, x_all: torch.Tensor, y_all: torch.Tensor) -> dict[str, torch.Tensor]:
        """The learned mask of every hidden unit of a frozen ``model``, per activation layer."""
        layers = activation_layers(model)
        widths = layer_widths(model, layers, x_all)
        gen = torch.Generator().manual_seed(self.seed)
        mask = {name: torch.ones(w, requires_grad=True) for name, w in widths.items()}
        noise = {name: torch.zeros(w, requires_grad=True) for name, w in widths.items()}
        perturb = {"on": False}

        def scale(name: str):
            def fn(out: torch.Tensor) -> torch.Tensor:
                coeff = mask[name] + noise[name] if perturb["on"] else mask[name]
                return out * coeff.view(1, -1, *([1] * (out.dim() - 2)))
            return fn

        optimiser = torch.optim.SGD(list(mask.values()), lr=self.lr, momentum=0.9)
        with intervene(model, {name: scale(name) for name in layers}):
            for _ in range(self.steps):
                idx = torch.randint(len(x_all), (self.batch_size,), generator=gen)
                x, y = x_all[idx], y_all[idx]
                with torch.no_grad():  # random start, then one ascent step on the perturbation
                    for name in layers:
                        noise[name].uniform_(-self.eps, self.eps, generator=gen)
                perturb["on"] = True
                grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(noise.values()))
                with torch.no_grad():
                    for name, grad in zip(layers, grads):
                        noise[name].add_(self.eps * grad.sign()).clamp_(-self.eps, self.eps)
                robust = F.cross_entropy(model(x), y)
                perturb["on"] = False
                natural = F.cross_entropy(model(x), y)
                optimiser.zero_grad()
                (self.alpha * natural + (1 - self.alpha) * robust).backward()
                optimiser.step()
                with torch.no_grad():
                    for m in mask.values():
                        m.clamp_(0, 1)
        return {name: m.detach() for name, m in mask.items()}

    def remove(self, subject: Subject) -> nn.Module:
        x_fit, y_fit, x_val, y_val = split_budget(subject, self.val_fraction, self.seed)
        masks = self.masks(subject.model, x_fit, y_fit)
        candidates = sorted((float(m[i]), name, i) for name, m in masks.items() for i in range(len(m))
                            if m[i] < self.threshold)
        model = editable_copy(subject)
        units = safe_prefix(model, [(name, i) for _, name, i in candidates], x_val, y_val, self.max_drop)
        return make_permanent(prune_units(model, units)).eval()
