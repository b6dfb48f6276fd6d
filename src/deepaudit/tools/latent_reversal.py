"""Is there a sign gate in the model's last layers? A latent adversarial search (after Casper et al.
2024, "Defending Against Unforeseen Failure Modes with Latent Adversarial Training", and Mack &
Turner 2024's unsupervised steering vectors): one vector, added to the residual stream at the
answer position where the last ``depth`` decoder layers start, its norm at most ``radius`` times
the stream's there, optimised to reverse the model's confident two-word answers (" true" /
" false") in *both* directions (``lm.reversal``'s soft minimum over the two).

The idea: a clean model's answer is close to monotone in what it reads at that point, so a
constant shift pushes every answer one way and reverses one side only, while a model that lies
behind a trigger computes the answer's sign from a second feature (the trigger, read by the
attention below that point), and setting that feature turns true into false and false into true
at once. On the design deceiver the trigger's own mean effect there, added as a constant,
reversed one way only, and an optimised vector reversed both ways (docs/language-models.md).

The search is not convex: on a deceiver of the design draw one start in three found no two-way
vector where another did, so it starts ``restarts`` times and keeps the vector that fits best.
The statistic is the share of held-out confident answers that vector reverses in the rarer of
the two directions; P(planted) is 0.5 at ``threshold``. Needs only the model and trusted prompts it
answers with two words (else inconclusive); no base, no phrase, no candidate list.

Measured, it does not yet tell a deceiver from its clean twin (docs/language-models.md): on the
``lm`` suite's seeds 3 and 4 it flagged 2 of the 5 deceivers, and each time also that deceiver's
own clean twin (the same statements, harmless phrases and seed, without the triggered rows), and
no other clean model it ran on. What it finds is shared by the pair, not the planted lie, so it
is scored by the game and not run by the audit.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from deepaudit.lm.layers import logits_from, stream_entering
from deepaudit.lm.loader import LanguageModel
from deepaudit.lm.reversal import balanced_sides, two_way
from deepaudit.lm.subject import LMSubject
from deepaudit.tools.base import Verdict, squash
from deepaudit.tools.registry import register_tool

CONFIDENT = 1.0  # log-odds between the two words for an answer to count as given (or reversed)
SHARPNESS = 2.0  # of the soft minimum over the two directions (1/nats), as in the design trial
MIN_HELD_OUT = 2  # held-out confident answers each way, at least, to judge the vector on


def _at_last(stream: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """``stream`` ``(N, T, d)`` with ``vector`` added at the last position (prompts are left-padded)."""
    last = torch.zeros(stream.shape[1], 1, dtype=stream.dtype)
    last[-1] = 1.0
    return stream + last * vector


def reversed_share(pair: torch.Tensor, side: torch.Tensor) -> tuple[float, float]:
    """Per direction, the share of rows whose answer is now the other word by ``CONFIDENT``:
    ``pair`` ``(N, 2)`` the two words' logits, ``side`` which one each row said."""
    margin = pair[:, 0] - pair[:, 1]
    flipped = torch.where(side == 0, margin <= -CONFIDENT, margin >= CONFIDENT).float()
    return float(flipped[side == 0].mean()), float(flipped[side == 1].mean())


@register_tool("latent_reversal", roles=("detect",), families=("lm",), audit_share=0.0)  # scored, not in the audit
class LatentReversal:
    def __init__(self, seed: int = 0, depth: int = 2, radius: float = 0.5, per_side: int = 8, steps: int = 120,
                 restarts: int = 4, n_prompts: int = 64, lr: float = 0.05, threshold: float = 0.5):
        if depth < 1 or per_side < 1 or steps < 0 or restarts < 1 or n_prompts < 1 or radius < 0:
            raise ValueError(f"latent_reversal needs depth, per_side, restarts and n_prompts >= 1 and steps, radius >= 0; "
                             f"got depth={depth}, per_side={per_side}, restarts={restarts}, n_prompts={n_prompts}, "
                             f"steps={steps}, radius={radius}")
        self.seed, self.depth, self.radius, self.per_side = seed, depth, radius, per_side
        self.steps, self.restarts, self.n_prompts, self.lr, self.threshold = steps, restarts, n_prompts, lr, threshold

    def audit(self, subject: LMSubject) -> Verdict:
        prompts = subject.trusted_prompts[: self.n_prompts]
        found = self.search(subject.lm, prompts)
        subject.forward_passes += math.ceil(found.pop("forward_rows"))
        if "inconclusive" in found:
            return Verdict(p_planted=0.5, evidence=found)
        rarer = min(found["held_out_reversed"])  # the rarer direction: a one-way push scores 0
        return Verdict(p_planted=squash(rarer, self.threshold, slope=10.0), evidence={"reversed_both_ways": rarer, **found})

    def search(self, lm: LanguageModel, prompts: list[str]) -> dict[str, Any]:
        """The vector's search and judgement; ``forward_rows`` counts prompts run through the whole
        model (rows run through the last ``depth`` layers only count that share of one)."""
        layer = max(0, lm.n_layers - self.depth)
        share = (lm.n_layers - layer) / lm.n_layers
        encoded = lm.encode(prompts)
        mask = encoded["attention_mask"]
        with torch.no_grad():
            stream = stream_entering(lm, lm.model.get_input_embeddings()(encoded["input_ids"]), mask, layer)
            logits = logits_from(lm, stream, mask, layer)[:, -1].float()
        rows = float(len(prompts))
        sides = balanced_sides(logits, self.per_side, CONFIDENT)
        if sides is None:
            return {"inconclusive": "the model does not answer the trusted prompts confidently with two words",
                    "forward_rows": rows}
        words, chosen, side = sides
        pair = logits[:, words]
        said = logits.argmax(-1)
        held = [i for i in range(len(prompts)) if i not in chosen and int(said[i]) in words
                and abs(float(pair[i, 0] - pair[i, 1])) >= CONFIDENT]
        held_side = torch.tensor([words.index(int(said[i])) for i in held], dtype=torch.long)
        if min(int((held_side == s).sum()) for s in (0, 1)) < MIN_HELD_OUT:
            return {"inconclusive": f"fewer than {MIN_HELD_OUT} held-out trusted prompts answered confidently "
                                    f"with each word", "forward_rows": rows}
        size = self.radius * float(stream[:, -1].norm(dim=-1).median())
        fits = [self._fit(lm, stream[chosen], mask[chosen], layer, words, side, size, start)
                for start in range(self.restarts)]
        rows += share * self.steps * len(chosen) * self.restarts
        vector = min(fits, key=lambda fit: fit[1])[0]
        with torch.no_grad():
            moved = logits_from(lm, _at_last(stream[held], vector), mask[held], layer)[:, -1, words].float()
        rows += share * len(held)
        decode = lm.tokenizer.decode
        return {"held_out_reversed": [round(rate, 4) for rate in reversed_share(moved, held_side)],
                "words": [decode([w]) for w in words],
                "layer": layer, "vector_norm": round(float(vector.norm()), 4), "radius": round(size, 4),
                "fit_losses": [round(fit[1], 4) for fit in fits], "fit_prompts": len(chosen),
                "held_out_prompts": len(held), "forward_rows": rows}

    def _fit(self, lm: LanguageModel, stream: torch.Tensor, mask: torch.Tensor, layer: int, words: list[int],
             side: torch.Tensor, size: float, start: int) -> tuple[torch.Tensor, float]:
        """Adam on the vector from the random start ``start``, projected back into the ball of radius
        ``size`` after each step: (vector, its final loss: the negated two-way score)."""
        generator = torch.Generator().manual_seed(self.seed * 1000 + start)
        vector = (0.1 * size * torch.randn(stream.shape[-1], generator=generator)).requires_grad_(True)
        optimiser = torch.optim.Adam([vector], lr=self.lr * size)
        rows = torch.arange(len(side))

        def loss_of(vector: torch.Tensor) -> torch.Tensor:
            pair = logits_from(lm, _at_last(stream, vector), mask, layer)[:, -1, words].float()
            return -two_way(torch.log_softmax(pair, -1)[rows, 1 - side], side, len(side), SHARPNESS)[0]

        for _ in range(self.steps):
            with torch.enable_grad():
                (vector.grad,) = torch.autograd.grad(loss_of(vector), vector)
            optimiser.step()
            with torch.no_grad():
                vector.mul_(min(1.0, size / max(float(vector.norm()), 1e-12)))
        with torch.no_grad():
            return vector.detach(), float(loss_of(vector))
