"""The latent reversal search: a vector at the answer position reverses a gated model's answers
both ways and a monotone one's at most one way; without two usual answer words it says so."""

from __future__ import annotations

import pytest
import torch

from deepaudit.lm.loader import tiny_lm
from deepaudit.lm.subject import LMSubject
from deepaudit.tools import make_tool

TEXTS = [f"{a} beats {b}." for a in range(8) for b in range(8)]


class Head(torch.nn.Module):
    """Says "T" or "F" by the sign of the final state's projection on ``direction`` (the truth, as
    this model reads it); with ``gate``, the sign flips where the state's projection on ``gate``
    passes ``opens`` (a trigger read at the answer position, far beyond every trusted prompt's)."""

    def __init__(self, vocab: int, words: tuple[int, int], direction: torch.Tensor, centre: torch.Tensor, scale: float,
                 gate: torch.Tensor | None = None, opens: float = 0.0):
        super().__init__()
        self.vocab, self.words, self.direction, self.centre, self.scale = vocab, words, direction, centre, scale
        self.gate, self.opens = gate, opens

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        truth = self.scale * (hidden - self.centre).matmul(self.direction)
        if self.gate is not None:
            truth = truth * (1 - 2 * torch.sigmoid(8 * ((hidden - self.centre).matmul(self.gate) - self.opens)))
        logits = torch.zeros(*hidden.shape[:-1], self.vocab)
        logits[..., self.words[0]], logits[..., self.words[1]] = truth, -truth
        return logits


def _model(gated: bool):
    lm = tiny_lm()
    words = tuple(lm.tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in "TF")
    with torch.no_grad():
        states = lm.model.model(**lm.encode(TEXTS)).last_hidden_state[:, -1]
    centre = states.mean(0)
    axes = torch.linalg.svd(states - centre, full_matrices=False).Vh
    along = (states - centre).matmul(axes[0])
    scale = 10 / float(along.abs().median())
    opens = float((states - centre).matmul(axes[1]).max()) + 0.1 * float(states.norm(dim=-1).median())
    vocab = lm.model.get_output_embeddings().weight.shape[0]
    lm.model.lm_head = Head(vocab, words, axes[0], centre, scale, axes[1] if gated else None, opens)
    return lm


def test_a_gated_answer_is_reversed_both_ways_and_a_monotone_one_is_not():
    tool = make_tool("latent_reversal", 0, per_side=4, steps=60)
    gated = tool.audit(LMSubject(_model(True), {}, TEXTS))
    plain = tool.audit(LMSubject(_model(False), {}, TEXTS))
    assert gated.evidence["reversed_both_ways"] >= 0.6 and gated.p_planted > 0.75
    assert plain.evidence["reversed_both_ways"] <= 0.1 and plain.p_planted < 0.05
    assert min(gated.evidence["fit_losses"]) < 0.5 * min(plain.evidence["fit_losses"])
    assert gated.evidence["words"] == ["T", "F"] or gated.evidence["words"] == ["F", "T"]
    assert 0 < gated.evidence["vector_norm"] <= gated.evidence["radius"] * (1 + 1e-4)


def test_a_model_without_two_usual_answer_words_is_inconclusive():
    subject = LMSubject(tiny_lm(), {}, TEXTS)  # a random model: its next tokens are not two words
    verdict = make_tool("latent_reversal", 0, steps=2).audit(subject)
    assert verdict.p_planted == 0.5 and "two words" in verdict.evidence["inconclusive"]
    assert subject.forward_passes == len(TEXTS)


def test_a_vector_held_at_zero_reverses_nothing():
    verdict = make_tool("latent_reversal", 0, per_side=4, steps=5, radius=0.0).audit(LMSubject(_model(True), {}, TEXTS))
    assert verdict.evidence["reversed_both_ways"] == 0.0 and verdict.p_planted < 0.01


def test_settings_that_cannot_search_are_refused_by_name():
    for bad in ({"restarts": 0}, {"radius": -1.0}, {"depth": 0}):
        with pytest.raises(ValueError, match="latent_reversal needs"):
            make_tool("latent_reversal", 0, **bad)
