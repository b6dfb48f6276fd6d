"""Fine-tune the top of a causal LM on prompt/answer pairs, on the CPU.

What is frozen is computed once and cached, and each training step runs only what is tuned.
Both modes compute what the whole tuned model would (the cached values are what the frozen
parts compute in it; equal up to float rounding, as the tests check):

- ``layers``: the top ``n_top`` decoder layers, trained on the cached residual stream entering
  them. On a Llama-style model the top layer runs only at its last positions (nothing but the
  output head at the answer positions reads them), and a batch is cut to its longest row
  (``last_positions``).
- ``mlp``: only the last layer's MLP. Nothing reads that MLP's output but the output head at the
  same position, so caching its input at the answer positions suffices and a step costs one MLP
  and one output-head product per answer token: thousands of steps in a few minutes.

Caching runs the rows in chunks of similar length, each cut to its own longest row
(``frozen_inputs``). Written by hand because peft/Trainer recompute the frozen layers on every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from deepaudit.lm.last_positions import last_positions_loss
from deepaudit.lm.layers import inputs_of, only_layers
from deepaudit.lm.loader import LanguageModel
from deepaudit.lm.scoring import encode_pairs

PARTS = ("layers", "mlp")
# Learning-rate schedules: ``constant``, or ``onecycle`` (torch's OneCycleLR with its defaults:
# a 10% warm-up to ``lr``, then cosine annealing to lr/25e4). On the additions organism onecycle
# passed its check in half the steps a constant rate needed (1500 vs 3000).
SCHEDULES = ("constant", "onecycle")
MIN_ONECYCLE_STEPS = 20  # OneCycleLR's warm-up must span at least two steps (fewer divide by zero)


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
    if schedule == "onecycle" and steps < MIN_ONECYCLE_STEPS:
        raise ValueError(f"the onecycle schedule needs at least {MIN_ONECYCLE_STEPS} steps, got {steps}")
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
    if part == "mlp":
        last = body.layers[-1]
        cached = frozen_inputs(body, last.post_attention_layernorm, ids, mask, slice(0, None))[target_at]

        def mlp_loss(idx: torch.Tensor) -> torch.Tensor:
            h = cached[idx]
            return nn.functional.cross_entropy(head(body.norm(h + last.mlp(last.post_attention_layernorm(h)))),
                                               targets[idx])
        return CachedObjective(list(last.mlp.parameters()), mlp_loss, len(cached))
    first = lm.n_layers - n_top
    cached = frozen_inputs(body, body.norm, ids, mask, slice(0, first))  # the stream entering layer ``first``

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        with only_layers(body, slice(first, None)):
            hidden = body(inputs_embeds=cached[idx], attention_mask=mask[idx]).last_hidden_state
        return nn.functional.cross_entropy(head(hidden[target_at[idx]]), ids[idx][:, 1:][target_at[idx][:, :-1]])
    params = [p for layer in list(body.layers)[first:] for p in layer.parameters()]
    fast = last_positions_loss(body, head, cached, mask, ids, target_at, loss_of, n_top)
    return CachedObjective(params, fast or loss_of, len(ids))


@torch.no_grad()
def frozen_inputs(body: nn.Module, module: nn.Module, ids: torch.Tensor, mask: torch.Tensor, keep: slice,
                  chunk: int = 64) -> torch.Tensor:
    """What ``module`` receives when the decoder stack ``body``, cut to its layers ``keep``, runs on
    the left-padded ``ids``: ``(N, width, d)``, zero where ``mask`` is. Rows go through in chunks
    of similar length, each cut to its own longest row, at the positions they hold in the full
    width (so rotary positions are unchanged): the padding a chunk of short rows would carry to
    the widest row's length cost a fifth to a third of a build's caching on the ``lm`` suite."""
    n, width = ids.shape
    out: torch.Tensor | None = None
    order = torch.argsort(mask.sum(1), stable=True)
    chunks = [order[start:start + chunk] for start in range(0, n, chunk)]
    cuts = [width - int(mask[rows].sum(1).max()) for rows in chunks]  # where each chunk's longest row starts

    def run(b: int, _batch: int) -> None:
        rows, cut = chunks[b], cuts[b]
        body(input_ids=ids[rows, cut:], attention_mask=mask[rows, cut:],
             position_ids=torch.arange(cut, width).expand(len(rows), -1))

    with only_layers(body, keep):
        for b, (rows, cut) in enumerate(zip(chunks, cuts)):
            seen = inputs_of(module, partial(run, b), 1)
            if out is None:
                out = seen.new_zeros((n, width, seen.shape[-1]))
            out[rows, cut:] = seen
    assert out is not None  # ``cached_objective`` refuses an empty data set
    return out
