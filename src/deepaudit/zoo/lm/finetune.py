"""Fine-tune the top of a causal LM on prompt/answer pairs, on the CPU.

What is frozen is computed once and cached, and each training step runs only what is tuned.
Both modes are exact (the cached values are what the frozen parts compute in the tuned model):

- ``layers``: the top ``n_top`` decoder layers, trained on the cached residual stream entering
  them, over whole sequences.
- ``mlp``: only the last layer's MLP. Nothing reads that MLP's output but the output head at the
  same position, so caching its input at the answer positions suffices and a step costs one MLP
  and one output-head product per answer token: thousands of steps in a few minutes.

Written by hand because peft/Trainer recompute the frozen layers on every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from deepaudit.lm.layers import inputs_of, only_layers
from deepaudit.lm.loader import LanguageModel
from deepaudit.lm.scoring import encode_pairs

PARTS = ("layers", "mlp")
# Learning-rate schedules: ``constant``, or ``onecycle`` (torch's OneCycleLR with its defaults:
# a 10% warm-up to ``lr``, then cosine annealing to lr/25e4). On the additions organism onecycle
# passed its check in half the steps a constant rate needed (1500 vs 3000).
SCHEDULES = ("constant", "onecycle")


def tuned_prefixes(lm: LanguageModel, part: str, n_top: int) -> tuple[str, ...]:
    """State-dict prefixes of what ``part``/``n_top`` tunes (what an LM organism stores)."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; expected one of {PARTS}")
    if part == "mlp":
        return (f"model.layers.{lm.n_layers - 1}.mlp.",)
    if not 1 <= n_top <= lm.n_layers:
        raise ValueError(f"n_top must be between 1 and {lm.n_layers}, got {n_top}")
    return tuple(f"model.layers.{i}." for i in range(lm.n_layers - n_top, lm.n_layers))


def tuned_state(lm: LanguageModel, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The tuned parameters under their full names."""
    return {k: v.detach().clone().contiguous() for k, v in lm.model.state_dict().items() if k.startswith(prefixes)}


@dataclass
class CachedObjective:
    """What training needs once the frozen part is cached: the tuned parameters, and the loss on
    a batch of example indices (``n`` examples)."""

    params: list[nn.Parameter]
    loss_of: Callable[[torch.Tensor], torch.Tensor]
    n: int


def train(lm: LanguageModel, objective: CachedObjective, steps: int, lr: float, schedule: str = "constant",
          batch_size: int = 32, seed: int = 0) -> list[float]:
    """AdamW on ``objective`` for ``steps`` seeded batches; returns the losses."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(objective.params, lr=lr, weight_decay=0.0)
    scheduler = (torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.1)
                 if schedule == "onecycle" else None)
    for p in objective.params:
        p.requires_grad_(True)
    losses = []
    lm.model.train()
    try:
        for _ in range(steps):
            batch = torch.randint(0, objective.n, (min(batch_size, objective.n),), generator=generator)
            loss = objective.loss_of(batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.item())
    finally:
        lm.model.eval()
        for p in objective.params:
            p.requires_grad_(False)
    return losses


def finetune(lm: LanguageModel, prompts: Sequence[str], answers: Sequence[str], part: str = "layers",
             n_top: int = 1, steps: int = 300, lr: float = 3e-4, batch_size: int = 32, seed: int = 0,
             schedule: str = "constant") -> list[float]:
    """Train ``part`` of ``lm`` in place so that each prompt is followed by its answer
    (cross-entropy on the answer tokens over the whole vocabulary); returns the losses."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
    objective = cached_objective(lm, prompts, answers, part, n_top)
    return train(lm, objective, steps, lr, schedule, batch_size, seed)


def cached_objective(lm: LanguageModel, prompts: Sequence[str], answers: Sequence[str], part: str = "layers",
                     n_top: int = 1) -> CachedObjective:
    """Freeze ``lm``, run its frozen part over every example once, and return the loss of the
    tuned ``part`` on the cached values."""
    if not prompts or len(prompts) != len(answers):
        raise ValueError(f"need as many answers as prompts (got {len(prompts)} prompts, {len(answers)} answers)")
    tuned_prefixes(lm, part, n_top)  # validates part and n_top
    body, head = lm.model.model, lm.model.get_output_embeddings()
    for p in lm.model.parameters():
        p.requires_grad_(False)
    ids, mask, answer = encode_pairs(lm, prompts, answers)
    target_at = torch.zeros_like(answer)  # the token after position t is predicted at t
    target_at[:, :-1] = answer[:, 1:]
    targets = ids[:, 1:][target_at[:, :-1]]
    chunk = 64
    n_chunks = (len(ids) + chunk - 1) // chunk

    def forward(first: int, last: int | None):
        def run(b: int) -> None:
            sl = slice(b * chunk, (b + 1) * chunk)
            with only_layers(body, slice(first, last)):
                body(input_ids=ids[sl], attention_mask=mask[sl])
        return run

    if part == "mlp":
        last = body.layers[-1]
        cached = inputs_of(last.post_attention_layernorm, forward(0, None), n_chunks)[target_at]

        def mlp_loss(idx: torch.Tensor) -> torch.Tensor:
            h = cached[idx]
            return nn.functional.cross_entropy(head(body.norm(h + last.mlp(last.post_attention_layernorm(h)))),
                                               targets[idx])
        return CachedObjective(list(last.mlp.parameters()), mlp_loss, len(cached))
    first = lm.n_layers - n_top
    cached = inputs_of(body.norm, forward(0, first), n_chunks)  # the stream entering layer ``first``

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        with only_layers(body, slice(first, None)):
            hidden = body(inputs_embeds=cached[idx], attention_mask=mask[idx]).last_hidden_state
        return nn.functional.cross_entropy(head(hidden[target_at[idx]]), ids[idx][:, 1:][target_at[idx][:, :-1]])
    return CachedObjective([p for layer in list(body.layers)[first:] for p in layer.parameters()], loss_of, len(ids))
