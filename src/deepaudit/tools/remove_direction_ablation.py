"""Remove a language model's planted behaviour by ablating one direction of its residual stream
(remove track, language models). The direction is a difference-in-means probe between trusted
prompts led by the suspect phrase (the organism's recovered trigger, a shared finding: what a
trigger search recovered, the auditor's own) and the same prompts without it, read where the
fine-tuning starts: the residual entering the first decoder layer whose weights differ from the
base model's. The edited model mean-ablates that direction there, at every position: each
residual's component along it is set to its mean over the trusted prompts, so the changed
layers can no longer read the phrase along it."""

from __future__ import annotations

import copy

import torch

from deepaudit.lm.activations import last_token_residuals, layer_names
from deepaudit.lm.interventions import ResidualAblation
from deepaudit.lm.loader import LanguageModel, first_changed_layer
from deepaudit.lm.subject import LMSubject
from deepaudit.tools.findings import suspect_phrase
from deepaudit.tools.registry import register_tool


@register_tool("direction_ablation", roles=("remove",), families=("lm",), needs=("base_model", "trigger"),
               version=3)
class DirectionAblation:
    def __init__(self, seed: int = 0, n_prompts: int = 64):
        self.seed, self.n_prompts = seed, n_prompts

    def remove(self, subject: LMSubject) -> LanguageModel:
        """A copy of the subject's model with the phrase direction mean-ablated (the subject's own model is untouched)."""
        if subject.base is None:
            raise ValueError("direction_ablation needs the base model the audited model was fine-tuned from")
        first = first_changed_layer(subject.lm, subject.base)
        if first == 0:
            raise ValueError("the first decoder layer is fine-tuned: no residual stream before it to ablate")
        trigger = suspect_phrase(subject)
        prompts, with_phrase = subject.phrase_pairs(trigger, self.n_prompts, self.seed)
        layer = first - 1
        clean = last_token_residuals(subject.lm, prompts, [layer])[0]
        led = last_token_residuals(subject.lm, with_phrase, [layer])[0]
        subject.forward_passes += 2 * len(prompts)
        direction = torch.tensor(led.mean(0) - clean.mean(0))
        direction = direction / direction.norm()
        level = float(torch.tensor(clean).mean(0) @ direction)
        model = copy.deepcopy(subject.lm.model)
        self.evidence = {"layer": layer, "phrase": trigger.text}
        ablation = ResidualAblation(layer_names(subject.lm)[layer], direction, level)
        edited = LanguageModel(model, subject.lm.tokenizer, f"{subject.lm.source} (direction-ablated)")
        return edited.with_interventions([ablation])
