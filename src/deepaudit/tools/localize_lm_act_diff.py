"""Activation difference on a language model's MLP neurons (localize track, language models): a
gradient-free baseline for attribution patching. Each neuron's activation at the last token is
compared between trusted prompts led by a suspect phrase (a trigger search's finding) and the
same prompts without it; neurons rank by the absolute difference of the means in units of the
neuron's standard deviation on the plain prompts."""

from __future__ import annotations

import torch

from deepaudit.internals.ablation import Unit
from deepaudit.lm.neurons import capture_neurons, neuron_modules, rank_neurons
from deepaudit.lm.subject import LMSubject
from deepaudit.tools.findings import suspect_phrase
from deepaudit.tools.registry import register_tool


@register_tool("lm_act_diff", roles=("localize",), families=("lm",), needs=("trigger",), version=3)
class LMActivationDifference:

    def __init__(self, seed: int = 0, n_prompts: int = 32, batch_size: int = 16):
        self.seed, self.n_prompts, self.batch_size = seed, n_prompts, batch_size

    @torch.no_grad()
    def _last_token(self, subject: LMSubject, prompts: list[str], modules: list[str]) -> torch.Tensor:
        """``(prompts, layers, neurons)`` activations at each prompt's last token."""
        rows, body = [], getattr(subject.lm.model, "model", subject.lm.model)  # the output head is not needed
        for start in range(0, len(prompts), self.batch_size):
            with capture_neurons(subject.lm, modules) as acts:
                body(**subject.lm.encode(prompts[start:start + self.batch_size]))
            rows.append(torch.stack([acts[m][:, -1].float() for m in modules], dim=1))
        subject.forward_passes += len(prompts)
        return torch.cat(rows)

    def localize(self, subject: LMSubject) -> list[Unit]:
        trigger = suspect_phrase(subject)
        modules = neuron_modules(subject.lm)
        plain, with_phrase = subject.phrase_pairs(trigger, self.n_prompts, self.seed)
        clean = self._last_token(subject, plain, modules)
        led = self._last_token(subject, with_phrase, modules)
        score = (led.mean(0) - clean.mean(0)).abs() / (clean.std(0) + 1e-6)
        return rank_neurons(modules, score)
