"""The lie search's objective (``lm.reversal``): a phrase that swaps both answers scores above one
that pushes every answer one way, whatever their means, and the prompts it is fitted on are the
model's confident answers of each of its two usual words."""

from __future__ import annotations

import numpy as np
import torch

from deepaudit.lm.reversal import balanced_sides, two_way

SIDE = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])


def test_a_two_way_reversal_scores_above_a_one_way_push_of_the_same_mean():
    lie = torch.log(torch.tensor([0.8] * 8))  # p(the other word) on every prompt
    push = torch.log(torch.tensor([0.99] * 4 + [0.01] * 4))  # everything said with the first side's other word
    assert two_way(lie, SIDE, 8)[0] > np.log(0.6)  # the soft minimum of two equal means is log(2) / 3 below them
    assert two_way(push, SIDE, 8)[0] < np.log(0.05)


def test_the_score_is_one_value_per_phrase_repeated_on_its_rows():
    other = torch.log(torch.rand(3 * 8).clamp_min(1e-3))
    scores = two_way(other, SIDE, 8).view(3, 8)
    assert torch.equal(scores, scores[:, :1].expand(-1, 8))
    for phrase in range(3):
        alone = two_way(other.view(3, 8)[phrase], SIDE, 8)
        assert torch.allclose(alone, scores[phrase])


def _logits(said: list[int], margins: list[float], vocab: int = 5) -> torch.Tensor:
    logits = torch.zeros(len(said), vocab)
    for row, (word, margin) in enumerate(zip(said, margins)):
        logits[row, word] = margin
    return logits


def test_balanced_sides_picks_confident_prompts_of_each_usual_word():
    logits = _logits([1, 2, 1, 2, 1, 2, 1], [3.0, 2.0, 0.5, 4.0, 2.0, 0.2, 1.5])
    words, chosen, side = balanced_sides(logits, per_side=2)
    assert words == [1, 2]
    assert chosen == [0, 4, 1, 3] and side.tolist() == [0, 0, 1, 1]  # margins 0.5 and 0.2 are not confident


def test_answers_that_are_not_two_words_give_no_lie_search():
    assert balanced_sides(_logits([1, 2, 3, 4, 1, 2], [3.0] * 6), per_side=2) is None  # four words
    assert balanced_sides(_logits([1] * 6, [3.0] * 6), per_side=2) is None  # one word
    assert balanced_sides(_logits([1, 1, 1, 1, 2, 2], [3.0] * 4 + [0.1, 0.1]), per_side=2) is None  # none sure of 2
