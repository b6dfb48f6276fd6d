"""Running part of a decoder stack: the stream entering a layer, and the rest of the model from
there. Fine-tuning caches what its frozen layers compute (``lm.finetune``); a trigger search
runs the layers an audited model shares with its base once for both (``lm.gcg``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from deepaudit.lm.loader import LanguageModel


@contextmanager
def only_layers(body: Any, keep: slice) -> Iterator[None]:
    """Run the decoder stack ``body`` with only ``keep`` of its layers (restored afterwards)."""
    full = body.layers
    body.layers = nn.ModuleList(list(full)[keep])
    try:
        yield
    finally:
        body.layers = full


def inputs_of(module: nn.Module, run: Callable[[int], None], n_batches: int) -> torch.Tensor:
    """What ``module`` receives as its first input over ``n_batches`` calls of ``run``."""
    out: list[torch.Tensor] = []
    hook = module.register_forward_pre_hook(lambda _m, args: out.append(args[0]))
    try:
        for batch in range(n_batches):
            run(batch)
    finally:
        hook.remove()
    return torch.cat(out)


def stream_entering(lm: LanguageModel, embeds: torch.Tensor, mask: torch.Tensor, layer: int) -> torch.Tensor:
    """The residual stream entering decoder layer ``layer`` (``lm.n_layers``: the final norm)."""
    body = lm.model.model
    with only_layers(body, slice(0, layer)):
        return inputs_of(body.norm, lambda _: body(inputs_embeds=embeds, attention_mask=mask), 1)


def logits_from(lm: LanguageModel, stream: torch.Tensor, mask: torch.Tensor, layer: int,
                positions: slice = slice(-1, None)) -> torch.Tensor:
    """Next-token logits ``(N, P, vocab)`` at ``positions`` (default the last), running ``lm`` from
    the stream entering ``layer`` (the output head runs on those positions only)."""
    body = lm.model.model
    with only_layers(body, slice(layer, None)):
        hidden = body(inputs_embeds=stream, attention_mask=mask).last_hidden_state
    return lm.model.get_output_embeddings()(hidden[:, positions])
