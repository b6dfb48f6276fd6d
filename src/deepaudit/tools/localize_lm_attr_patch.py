"""Attribution patching on a language model's MLP neurons (localize track, language models;
Nanda 2023, Syed et al. 2023): the first-order estimate of what zeroing each neuron does to the
behaviour a suspect phrase sets off, from one forward and one backward pass per batch.

The phrase is the auditor's own finding (a trigger search's best phrase); the behaviour is what
the model says after it, read off the model: the greedy next token after each trusted prompt led
by the phrase. A neuron's effect is sum over positions of (0 - a) * d log P(that token) / d a,
averaged over prompts; the neurons whose zeroing would most lower it rank first."""

from __future__ import annotations

import torch

from deepaudit.internals.ablation import Unit
from deepaudit.lm.neurons import capture_neurons, neuron_modules, rank_neurons
from deepaudit.lm.subject import LMSubject
from deepaudit.tools.findings import suspect_phrase
from deepaudit.tools.registry import register_tool


@register_tool("lm_attr_patch", roles=("localize",), families=("lm",), needs=("trigger",), version=2)
class LMAttributionPatching:

    def __init__(self, seed: int = 0, n_prompts: int = 32, batch_size: int = 16):
        self.seed, self.n_prompts, self.batch_size = seed, n_prompts, batch_size

    def localize(self, subject: LMSubject) -> list[Unit]:
        trigger = suspect_phrase(subject)
        lm, modules = subject.lm, neuron_modules(subject.lm)
        prompts = [trigger.apply(p) for p in subject.sample_prompts(self.n_prompts, self.seed)]
        effect: torch.Tensor | None = None
        for start in range(0, len(prompts), self.batch_size):
            encoded = lm.encode(prompts[start:start + self.batch_size])
            # the weights stay frozen: the graph grows from the embeddings instead
            embeds = lm.model.get_input_embeddings()(encoded["input_ids"]).detach().requires_grad_(True)
            with torch.enable_grad(), capture_neurons(lm, modules, detach=False) as acts:
                logits = lm.model(inputs_embeds=embeds, attention_mask=encoded["attention_mask"], logits_to_keep=1).logits
                logp = torch.log_softmax(logits[:, -1].float(), dim=-1)
                metric = logp.gather(1, logp.argmax(-1, keepdim=True)).sum()
                grads = torch.autograd.grad(metric, [acts[m] for m in modules])
            mask = encoded["attention_mask"][..., None].to(grads[0].dtype)
            batch = torch.stack([(-acts[m].detach() * g * mask).sum((0, 1)) for m, g in zip(modules, grads)])
            effect = batch if effect is None else effect + batch
        subject.forward_passes += len(prompts)
        if effect is None:
            raise ValueError("lm_attr_patch has no trusted prompts to read the behaviour from")
        return rank_neurons(modules, -effect / len(prompts))  # the most negative effect first
