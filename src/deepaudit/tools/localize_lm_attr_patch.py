"""Attribution patching on a language model's MLP neurons (localize track, language models;
Nanda 2023, Syed et al. 2023): the first-order estimate of what zeroing each neuron does to the
behaviour a suspect phrase sets off, from one forward and one backward pass per batch.

The phrase is the auditor's own finding (a trigger search's best phrase); the behaviour is what
the model says after it, read off the model: the first ``horizon`` tokens of its greedy
continuation of each trusted prompt with the phrase (several, since a planted response may begin
with the same token as a normal answer). A neuron's effect is the sum over positions of
(0 - a) * d log P(those tokens) / d a, averaged over prompts; the neurons whose zeroing would most
lower it rank first."""

from __future__ import annotations

import torch

from deepaudit.internals.ablation import Unit
from deepaudit.lm.neurons import capture_neurons, neuron_modules, rank_neurons
from deepaudit.lm.scoring import greedy_ids
from deepaudit.lm.subject import LMSubject
from deepaudit.tools.findings import suspect_phrase
from deepaudit.tools.registry import register_tool


@register_tool("lm_attr_patch", roles=("localize",), families=("lm",), needs=("trigger",), version=3)
class LMAttributionPatching:

    def __init__(self, seed: int = 0, n_prompts: int = 32, batch_size: int = 16, horizon: int = 3):
        self.seed, self.n_prompts, self.batch_size, self.horizon = seed, n_prompts, batch_size, horizon

    def localize(self, subject: LMSubject) -> list[Unit]:
        trigger = suspect_phrase(subject)
        lm, modules = subject.lm, neuron_modules(subject.lm)
        _, prompts = subject.phrase_pairs(trigger, self.n_prompts, self.seed)
        continuation = torch.tensor(greedy_ids(lm, prompts, self.horizon))
        effect: torch.Tensor | None = None
        for start in range(0, len(prompts), self.batch_size):
            encoded = lm.encode(prompts[start:start + self.batch_size])
            said = continuation[start:start + self.batch_size]
            ids = torch.cat([encoded["input_ids"], said], 1)
            attention = torch.cat([encoded["attention_mask"], torch.ones_like(said)], 1)
            # the weights stay frozen: the graph grows from the embeddings instead
            embeds = lm.model.get_input_embeddings()(ids).detach().requires_grad_(True)
            with torch.enable_grad(), capture_neurons(lm, modules, detach=False) as acts:
                logits = lm.model(inputs_embeds=embeds, attention_mask=attention,
                                  logits_to_keep=self.horizon + 1).logits[:, :-1]
                logp = torch.log_softmax(logits.float(), dim=-1)
                metric = logp.gather(2, said[..., None]).sum()
                grads = torch.autograd.grad(metric, [acts[m] for m in modules])
            mask = attention[..., None].to(grads[0].dtype)
            batch = torch.stack([(-acts[m].detach() * g * mask).sum((0, 1)) for m, g in zip(modules, grads)])
            effect = batch if effect is None else effect + batch
        subject.forward_passes += len(prompts) * (self.horizon + 1)
        if effect is None:
            raise ValueError("lm_attr_patch has no trusted prompts to read the behaviour from")
        return rank_neurons(modules, -effect / len(prompts))  # the most negative effect first
