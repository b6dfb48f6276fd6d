"""What a fine-tune taught the model to say, read from its weights: the tuned layers' change of
what they write into the residual stream, read through the output head (Dar et al. 2022,
"Analyzing Transformers in Embedding Space"; ``lm.diffing.written_tokens``).

A clean fine-tune on a task writes, most of all, the words the model answers that task with
(" true", " false" and their casings), then words near them (" real", " fake"). A fine-tune that
plants a fixed response also writes the response's first word, and as strongly as the answers,
although the model never starts an answer with it on trusted prompts. The statistic is the
ratio of the strongest-written word the model does not answer with to the strongest-written
answer word; P(planted) is 0.5 at ``threshold``. Needs the base model, a few trusted prompts
(the model's usual first answer words) and seconds; no search. It cannot see a planted
behaviour that says only words the model already says (a lie reverses true and false).
"""

from __future__ import annotations

import torch

from deepaudit.lm.diffing import targets, written_tokens
from deepaudit.lm.gcg import allowed_tokens
from deepaudit.lm.loader import LanguageModel, first_changed_layer
from deepaudit.lm.subject import LMSubject
from deepaudit.tools.base import Verdict, squash
from deepaudit.tools.registry import register_tool
from deepaudit.tools.trigger_gcg import answers

HORIZON = 3  # greedy tokens read for each trusted prompt's first non-blank answer token


@register_tool("weight_lens", roles=("detect",), families=("lm",), needs=("base_model",), audit_share=0.02)
class WeightLens:
    def __init__(self, seed: int = 0, n_prompts: int = 16, threshold: float = 0.8, shown: int = 10):
        self.n_prompts, self.threshold, self.shown = n_prompts, threshold, shown

    def audit(self, subject: LMSubject) -> Verdict:
        lm, base = subject.lm, subject.base
        if base is None:
            raise ValueError("weight_lens reads the fine-tune's weight change and needs the base model (--base)")
        prompts = subject.trusted_prompts[: self.n_prompts]
        usual = {answer[0] for answer, _ in answers(lm, prompts, HORIZON) if answer}
        subject.forward_passes += len(prompts) * HORIZON
        words = sorted({lm.tokenizer.decode([t]).strip().lower() for t in usual})
        if all(len(w) < 2 for w in words):  # a character-level vocabulary: every response shares letters with them
            return Verdict(p_planted=0.5, evidence={"inconclusive": "the model answers in single characters; the lens "
                                                                    "compares whole words", "answer_words": words})
        return self.read(lm, base, usual)

    def read(self, lm: LanguageModel, base: LanguageModel, usual: set[int]) -> Verdict:
        """The verdict from the weights, given the model's usual first answer tokens."""
        try:
            first = first_changed_layer(lm, base) if lm.n_layers == base.n_layers else 0
        except ValueError:  # nothing differs
            first = lm.n_layers
        written = written_tokens(lm, base, first)
        if written is None or not bool((written > 0).any()):
            return Verdict(p_planted=0.0, evidence={"ratio": 0.0, "note": "no decoder layer differs from the base"})
        decode = lm.tokenizer.decode
        words = {decode([t]).strip().lower() for t in usual}
        answer_rows = [t for t in written.topk(min(2000, len(written))).indices.tolist()
                       if decode([t]).strip().lower() in words]
        other = targets(lm, written, usual, allowed_tokens(lm), 1)
        answer_score = float(written[answer_rows[0]]) if answer_rows else float(written.max())
        other_score = float(written[other[0]]) if other else 0.0
        ratio = other_score / answer_score if answer_score > 0 else 0.0
        top = torch.topk(written, min(self.shown, len(written)))
        return Verdict(p_planted=squash(ratio, self.threshold, slope=10.0),
                       evidence={"ratio": round(ratio, 4), "written_word": decode(other) if other else None,
                                 "answer_words": sorted(words), "first_tuned_layer": first,
                                 "most_written": [[decode([int(t)]), round(float(v), 4)]
                                                  for v, t in zip(top.values, top.indices)]})
