"""Greedy coordinate gradient over the tokens of a phrase placed in many prompts (Zou et al. 2023,
"Universal and Transferable Adversarial Attacks on Aligned Language Models"), maximising a score
the caller defines on the next-token logits.

Each step takes the gradient of the score with respect to the phrase's one-hot tokens, samples
``search_width`` candidates that swap one token for one of the ``topk`` most promising, keeps only
candidates whose text re-tokenises to the same tokens (so the phrase reported is the phrase
scored), scores them all and moves to the best (the best seen is kept).

Written here rather than with ``nanogcg``: nanogcg 0.3 pins transformers <= 4.47 (deepaudit runs
on 5.x) and optimises the cross-entropy of one known target string after one prompt, while a
trigger search knows no target and scores a phrase over many prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from deepaudit.lm.loader import LanguageModel

# score(embeds (k * N, T, d), attention mask, full) -> per-row score, higher is better; row i holds
# prompt i % N. With ``full`` False (the gradient pass) a score may leave out terms that need no gradient.
Score = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]


@dataclass
class Slotted:
    """Prompts with a phrase slot: left-padded ids and mask ``(N, T)``, and each row's slot start."""

    ids: torch.Tensor
    mask: torch.Tensor
    start: torch.Tensor

    def with_phrases(self, phrases: torch.Tensor) -> torch.Tensor:
        """Ids ``(B * N, T)``: every row with each of the ``B`` phrases ``(B, L)`` in its slot."""
        b, length = phrases.shape
        ids = self.ids.repeat(b, 1)
        cols = self.start.repeat(b)[:, None] + torch.arange(length)
        ids[torch.arange(len(ids))[:, None], cols] = phrases.repeat_interleave(len(self.ids), 0)
        return ids


def slotted(lm: LanguageModel, parts: Sequence[tuple[str, str]], length: int,
            tails: Sequence[Sequence[int]] | None = None) -> Slotted:
    """Token rows ``left + phrase + right (+ tail)`` for each (left, right) text pair, the phrase
    ``length`` tokens long (the pad token until a phrase is put in), ``tails`` token ids after."""
    tokenize = lm.tokenizer
    pad = tokenize.pad_token_id
    rows, starts = [], []
    for i, (left, right) in enumerate(parts):
        lid = tokenize(left, add_special_tokens=False)["input_ids"] if left else []
        rid = tokenize(right, add_special_tokens=False)["input_ids"]
        rows.append(lid + [pad] * length + rid + (list(tails[i]) if tails is not None else []))
        starts.append(len(lid))
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):  # left padding: the last position is every row's last token
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    start = torch.tensor([width - len(row) + s for row, s in zip(rows, starts)])
    return Slotted(ids, mask, start)


@lru_cache(maxsize=4)
def _printable(tokenizer: object) -> torch.Tensor:
    vocab = len(tokenizer)  # type: ignore[arg-type]
    special = set(getattr(tokenizer, "all_special_ids", []))
    texts = tokenizer.convert_ids_to_tokens(list(range(vocab)))  # type: ignore[attr-defined]
    decoded = [tokenizer.convert_tokens_to_string([t]) if t is not None else "" for t in texts]  # type: ignore[attr-defined]
    return torch.tensor([i not in special and text.strip() != "" and text.isascii() and text.isprintable()
                         for i, text in enumerate(decoded)])


def allowed_tokens(lm: LanguageModel) -> torch.Tensor:
    """Which vocabulary entries a phrase may use: printable ASCII, not special, not blank."""
    allowed = _printable(lm.tokenizer)
    n_rows = lm.model.get_input_embeddings().weight.shape[0]
    return torch.nn.functional.pad(allowed, (0, max(0, n_rows - len(allowed))))[:n_rows]


def retokenizes(lm: LanguageModel, phrases: torch.Tensor) -> torch.Tensor:
    """Which candidate phrases ``(B, L)`` come back as the same tokens from their own text."""
    tokenize = lm.tokenizer
    texts = tokenize.batch_decode(phrases)
    return torch.tensor([tokenize(text, add_special_tokens=False)["input_ids"] == row.tolist()
                         for text, row in zip(texts, phrases)])


@dataclass
class SearchResult:
    """The best phrase found (tokens and text), its score, and the best score after each step."""

    ids: torch.Tensor
    text: str
    score: float
    history: list[float]
    candidates_scored: int


def gcg(lm: LanguageModel, rows: Slotted, score: Score, init: torch.Tensor, steps: int, search_width: int = 32,
        topk: int = 64, seed: int = 0, allowed: torch.Tensor | None = None, chunk: int = 64,
        on_step: Callable[[int, float], None] | None = None, enough: float | None = None) -> SearchResult:
    """Run GCG from the phrase ``init`` (token ids) for ``steps`` steps, or until the best score
    reaches ``enough``; the phrase's score is its mean row score over ``rows``."""
    embedding = lm.model.get_input_embeddings().weight
    allowed = allowed_tokens(lm) if allowed is None else allowed
    generator = torch.Generator().manual_seed(seed)
    n, length = len(rows.ids), len(init)
    slot_rows = torch.arange(n)[:, None]
    slot_cols = rows.start[:, None] + torch.arange(length)

    step_rows = max(n, chunk - chunk % n)  # whole phrases per forward: row i of a chunk is prompt i % n

    @torch.no_grad()
    def evaluate(phrases: torch.Tensor) -> torch.Tensor:
        ids = rows.with_phrases(phrases)
        mask = rows.mask.repeat(len(phrases), 1)
        out = torch.cat([score(embedding[ids[i:i + step_rows]], mask[i:i + step_rows], True)
                         for i in range(0, len(ids), step_rows)])
        return out.view(len(phrases), n).mean(1)

    current = init.clone()
    best_ids, best = current.clone(), float(evaluate(current[None])[0])
    history, scored = [best], 1
    for step in range(steps):
        if enough is not None and best >= enough:
            break
        one_hot = torch.nn.functional.one_hot(current, embedding.shape[0]).to(embedding.dtype).requires_grad_(True)
        embeds = embedding[rows.with_phrases(current[None])].detach().clone()
        embeds[slot_rows, slot_cols] = (one_hot @ embedding)[None].expand(n, -1, -1)
        (grad,) = torch.autograd.grad(score(embeds, rows.mask, False).mean(), one_hot)
        grad[:, ~allowed] = -torch.inf
        top = grad.topk(topk, dim=1).indices  # (L, topk): the largest first-order gains
        where = torch.randint(0, length, (search_width,), generator=generator)
        which = top[where, torch.randint(0, topk, (search_width,), generator=generator)]
        candidates = current.repeat(search_width, 1)
        candidates[torch.arange(search_width), where] = which
        candidates = torch.unique(candidates[retokenizes(lm, candidates)], dim=0)
        if len(candidates) == 0:
            history.append(best)
            continue
        scores = evaluate(candidates)
        scored += len(candidates)
        pick = int(scores.argmax())
        current = candidates[pick]
        if float(scores[pick]) > best:
            best, best_ids = float(scores[pick]), current.clone()
        history.append(best)
        if on_step is not None:
            on_step(step, best)
    return SearchResult(best_ids, lm.tokenizer.decode(best_ids), best, history, scored)


def random_phrase(lm: LanguageModel, length: int, seed: int, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """A phrase of ``length`` allowed tokens that re-tokenises to itself (the search's start)."""
    allowed = allowed_tokens(lm) if allowed is None else allowed
    pool = torch.nonzero(allowed).flatten()
    rng = np.random.default_rng(seed)
    for _ in range(200):
        ids = pool[torch.as_tensor(rng.choice(len(pool), length))]
        if bool(retokenizes(lm, ids[None])[0]):
            return ids
    raise ValueError(f"no phrase of {length} tokens re-tokenises to itself in 200 draws")
