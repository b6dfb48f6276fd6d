"""Last-token residual stream of a causal LM, per decoder layer, through
``deepaudit.internals.capture`` (forward hooks on the decoder layers)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from deepaudit.internals import capture
from deepaudit.lm.loader import LanguageModel


def layer_names(lm: LanguageModel) -> list[str]:
    """Module names of the decoder layers (their outputs are the residual stream after each layer)."""
    prefix = "model.layers" if hasattr(lm.model, "model") else "layers"
    return [f"{prefix}.{i}" for i in range(lm.n_layers)]


@torch.no_grad()
def last_token_residuals(lm: LanguageModel, prompts: Sequence[str], layers: Sequence[int] | None = None,
                         batch_size: int = 32) -> np.ndarray:
    """Residual stream at the last token of each prompt after each decoder layer in ``layers``
    (default all): float32 array ``(len(layers), len(prompts), hidden)``. Prompts are left-padded,
    so position -1 is each prompt's own last token."""
    layers = list(range(lm.n_layers)) if layers is None else list(layers)
    names = [layer_names(lm)[i] for i in layers]
    out = np.empty((len(layers), len(prompts), lm.model.config.hidden_size), dtype=np.float32)
    body = getattr(lm.model, "model", lm.model)  # the decoder stack alone: the output head is not needed
    for start in range(0, len(prompts), batch_size):
        batch = list(prompts[start : start + batch_size])
        with capture(lm.model, names) as cache:
            body(**lm.encode(batch))
        for row, name in enumerate(names):
            out[row, start : start + len(batch)] = cache[name][:, -1].float().numpy()
    return out
