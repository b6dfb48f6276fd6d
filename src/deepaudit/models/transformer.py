"""A one-layer transformer for two-operand token tasks (modular addition), after Nanda et al.
2023: token and position embeddings, one attention layer, one ReLU MLP, no LayerNorm, logits
read at the last position. Written by hand because ``nn.TransformerEncoderLayer`` forces a
LayerNorm and fuses attention, leaving no named per-step hook points for
``deepaudit.internals.capture``."""

from __future__ import annotations

import math

import torch
from torch import nn


class Attention(nn.Module):
    """Multi-head causal self-attention with named projections and an ``pattern`` hook point
    (the attention probabilities, batch x heads x query x key)."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.pattern = nn.Identity()
        self.o = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        split = lambda t: t.view(b, n, self.n_heads, self.d_head).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
        pattern = self.pattern(scores.masked_fill(causal, float("-inf")).softmax(-1))
        return self.o((pattern @ v).transpose(1, 2).reshape(b, n, -1))


class OneLayerTransformer(nn.Module):
    """Input: token ids (batch x 3: ``a``, ``b`` and the ``=`` token, id ``num_classes``).
    Output: logits over ``num_classes`` answers at the last position. ``head`` is the unembedding
    and ``resid_final`` its input (the penultimate representation). The MLP runs at the last
    position only, the one that is read out, so ``resid_mid`` onwards are batch x width."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, d_model: int = 128,
                 n_heads: int = 4, d_mlp: int = 512):
        super().__init__()
        if len(input_shape) != 1:
            raise ValueError(f"a transformer takes inputs (n_ctx,) of token ids, not {tuple(input_shape)}")
        (n_ctx,) = input_shape
        self.embed = nn.Embedding(num_classes + 1, d_model)
        self.pos_embed = nn.Embedding(n_ctx, d_model)
        self.attn = Attention(d_model, n_heads)
        self.resid_mid = nn.Identity()
        self.mlp_in = nn.Linear(d_model, d_mlp)
        self.mlp_act = nn.ReLU()
        self.mlp_out = nn.Linear(d_mlp, d_model)
        self.resid_final = nn.Identity()
        self.head = nn.Linear(d_model, num_classes, bias=False)
        for embedding in (self.embed, self.pos_embed):  # Nanda et al.'s scale, not N(0, 1)
            nn.init.normal_(embedding.weight, std=d_model ** -0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.long()
        x = self.embed(tokens) + self.pos_embed.weight[: tokens.shape[1]]
        x = self.resid_mid((x + self.attn(x))[:, -1])  # only the last position is read out
        x = self.resid_final(x + self.mlp_out(self.mlp_act(self.mlp_in(x))))
        return self.head(x)
