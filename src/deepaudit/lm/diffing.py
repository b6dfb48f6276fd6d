"""Model diffing in embedding space: what a fine-tune changed, read from the weights alone by
comparing the tuned layers with the base model's and reading the change through the vocabulary
(Dar et al. 2022, "Analyzing Transformers in Embedding Space"). The input side says which tokens
the tuned layers now read differently (where a search for a trigger may start); the output side,
which tokens they can now write (what a planted response starts with)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from deepaudit.lm.loader import LanguageModel


def tuned_weights(lm: LanguageModel, base: LanguageModel, first: int) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, base weight, change) of every decoder-layer weight from layer ``first`` up that
    fine-tuning changed."""
    ref = dict(base.model.named_parameters())
    for name, weight in lm.model.named_parameters():
        layer = int(name.split(".layers.")[1].split(".")[0]) if ".layers." in name else -1
        if layer >= first and name in ref and ref[name].shape == weight.shape:
            delta = (weight - ref[name]).detach()
            if delta.abs().max() > 0:
                yield name, ref[name].detach(), delta


def changed_tokens(lm: LanguageModel, base: LanguageModel | None, first: int) -> torch.Tensor | None:
    """Per vocabulary token, how much the tuned layers' input projections changed on its
    (normalised) embedding, relative to the base's (None without a base)."""
    if base is None or first >= lm.n_layers:
        return None
    emb = lm.model.get_input_embeddings().weight
    emb = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-6)
    total = torch.zeros(len(emb))
    with torch.no_grad():
        for name, weight, delta in tuned_weights(lm, base, first):
            if name.endswith("proj.weight") and weight.shape[1] == emb.shape[1]:
                total += (emb @ delta.T).norm(dim=1) / (emb @ weight.T).norm(dim=1).clamp_min(1e-6)
    return total


OUTPUT_SIDE = ("o_proj.weight", "down_proj.weight")  # what a Llama layer writes into the residual stream


def written_tokens(lm: LanguageModel, base: LanguageModel | None, first: int) -> torch.Tensor | None:
    """Per vocabulary token, how far the tuned layers' change of what they write into the residual
    stream can move its logit: the weight change read in embedding space through the final norm
    and the output head (Dar et al. 2022, "Analyzing Transformers in Embedding Space"). A
    fine-tune that plants a fixed response writes the response's first token (None without a base)."""
    if base is None or first >= lm.n_layers:
        return None
    head = (lm.model.get_output_embeddings().weight * lm.model.model.norm.weight[None]).detach()
    head = head / head.norm(dim=1, keepdim=True).clamp_min(1e-6)
    total = torch.zeros(len(head))
    with torch.no_grad():
        for name, weight, delta in tuned_weights(lm, base, first):
            if name.endswith(OUTPUT_SIDE) and weight.shape[0] == head.shape[1]:
                total += (head @ delta).norm(dim=1)
    return total


def targets(lm: LanguageModel, written: torch.Tensor, usual: set[int], allowed: torch.Tensor, k: int) -> list[int]:
    """The ``k`` allowed tokens the fine-tune writes most, one per word (" Visit", "Visit" and
    " visit" are one), leaving out the model's usual first answer tokens in any casing: what the
    tuning made the model able to say that it does not already say."""
    def word(token: int) -> str:
        return lm.tokenizer.decode([token]).strip().lower()

    seen = {word(t) for t in usual}
    ranked = torch.where(allowed[: len(written)], written, -torch.inf).argsort(descending=True)
    out: list[int] = []
    for token in ranked[: 50 * k].tolist():
        if (key := word(token)) and key not in seen:
            out.append(token)
            if len(out) == k:
                break
        seen.add(key)
    return out
