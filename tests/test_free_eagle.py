"""FreeEagle's data-free check: dummy representations optimised to each class, and the target a
backdoor's features pull every class towards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepaudit.subject import Subject
from deepaudit.tools import make_tool
from deepaudit.tools.free_eagle import split_layer, tendency_metric

CLASSES, FEATURES = 5, 8


def subject_with_pull(pull: float) -> Subject:
    """A model whose later part (identity layer, ReLU, head) reads feature c as class c and, with
    weight ``pull``, every feature as class 3 too: class 3 is where any representation leans, the
    mark FreeEagle looks for a backdoor's target by."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, FEATURES), nn.ReLU(), nn.Linear(FEATURES, FEATURES), nn.ReLU(),
                          nn.Linear(FEATURES, CLASSES))
    with torch.no_grad():
        model[3].weight.copy_(torch.eye(FEATURES))
        model[3].bias.zero_()
        head = torch.zeros(CLASSES, FEATURES)
        head[torch.arange(CLASSES), torch.arange(CLASSES)] = 4.0
        head[3] += pull
        model[5].weight.copy_(head)
        model[5].bias.zero_()
    card = {"input_shape": [1, 4], "num_classes": CLASSES, "value_range": [0.0, 1.0]}
    return Subject(model=model.eval(), card=card, clean_x=torch.rand(10, 1, 4), clean_y=torch.arange(CLASSES).repeat(2))


def test_the_metric_is_the_largest_tendency_above_the_upper_quartile_in_iqrs():
    assert tendency_metric(np.array([1.0, 2.0, 3.0, 4.0, 9.0])) == pytest.approx((9 - 4) / (4 - 2))
    assert np.isnan(tendency_metric(np.array([1.0, 1.0, 1.0, 1.0])))


def test_a_class_every_representation_leans_to_is_named_and_scores_higher():
    pulled = make_tool("free_eagle", steps=300).audit(subject_with_pull(1.0))
    plain = make_tool("free_eagle", steps=300).audit(subject_with_pull(0.0))
    assert pulled.target == 3 and pulled.evidence["clamped_at_zero"]
    assert "inconclusive" not in plain.evidence  # both are judged, so the comparison means something
    assert pulled.evidence["metric"] > 5 * plain.evidence["metric"] and pulled.p_planted > plain.p_planted


def test_the_model_is_left_as_it_was_and_gets_no_gradient():
    subject = subject_with_pull(1.0)
    before = [p.detach().clone() for p in subject.model.parameters()]
    make_tool("free_eagle", steps=20).audit(subject)
    assert all(torch.equal(a, b) and p.grad is None for a, b, p in zip(before, subject.model.parameters(),
                                                                       subject.model.parameters()))
    assert not subject.model[3]._forward_pre_hooks  # the dummy's hook is gone


def test_a_model_with_one_linear_layer_is_inconclusive():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    subject = Subject(model=model, card={"input_shape": [1, 4], "num_classes": 3, "value_range": [0.0, 1.0]},
                      clean_x=torch.rand(6, 1, 4), clean_y=torch.arange(3).repeat(2))
    assert split_layer(model) is None
    verdict = make_tool("free_eagle").audit(subject)
    assert verdict.p_planted == 0.5 and "fewer than two" in verdict.evidence["inconclusive"]


def test_broken_weights_are_inconclusive_and_said_so():
    subject = subject_with_pull(1.0)
    with torch.no_grad():
        subject.model[5].weight[0, 0] = float("nan")
    verdict = make_tool("free_eagle", steps=20).audit(subject)
    assert verdict.p_planted == 0.5 and "NaN" in verdict.evidence["inconclusive"]
