"""Latent adversarial training (Casper et al. 2024, "Defending against unforeseen failure
modes with latent adversarial training"): fine-tune on the clean budget while an adversary
perturbs a hidden layer's activations (per input, an L2 ball of radius ``eps`` times that
activation's own norm; a few projected-gradient steps) to cause errors. A backdoor is a latent
shortcut to its target class; training the model to resist latent perturbations weakens it
without ever knowing the trigger."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepaudit.internals import capture, intervene
from deepaudit.internals.ablation import activation_layers
from deepaudit.subject import Subject
from deepaudit.tools.editing import editable_copy, fit
from deepaudit.tools.registry import register_tool


def _per_input(norms: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return norms.view(-1, *([1] * (like.dim() - 1)))


@register_tool("lat", roles=("remove",), families=("vision",), audit_share=0.0)
class LatentAdversarialTraining:

    def __init__(self, seed: int = 0, eps: float = 0.1, pgd_steps: int = 2, epochs: int = 5, lr: float = 1e-3,
                 batch_size: int = 32, layer: str | None = None):
        self.seed, self.eps, self.pgd_steps, self.epochs, self.lr = seed, eps, pgd_steps, epochs, lr
        self.batch_size, self.layer = batch_size, layer

    def remove(self, subject: Subject) -> nn.Module:
        model = editable_copy(subject)
        layer = self.layer or activation_layers(model)[0]
        return fit(model, subject.clean_x, subject.clean_y, self.epochs, self.lr, self.seed, self.batch_size,
                   loss_fn=lambda m, x, y: self._loss(m, layer, x, y))

    def _loss(self, model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Half the clean loss, half the loss under the strongest latent perturbation found."""
        with capture(model, [layer]) as cache:
            natural = F.cross_entropy(model(x), y)
        radius = _per_input(self.eps * cache[layer].flatten(1).norm(dim=1), cache[layer])
        delta = torch.zeros_like(cache[layer], requires_grad=True)
        step = 2.5 * radius / self.pgd_steps
        with intervene(model, {layer: lambda out: out + delta}):
            for _ in range(self.pgd_steps):
                (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), delta)
                with torch.no_grad():
                    delta += step * grad / _per_input(grad.flatten(1).norm(dim=1).clamp_min(1e-12), grad)
                    norm = _per_input(delta.flatten(1).norm(dim=1).clamp_min(1e-12), delta)
                    delta *= (radius / norm).clamp(max=1.0)
            adversarial = F.cross_entropy(model(x), y)
        return 0.5 * natural + 0.5 * adversarial
