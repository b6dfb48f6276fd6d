"""The maximum-margin detector (MM-BD): its margin, its null's calibration, and the smoke trojan's
target found by the margin search alone, with no clean input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepaudit.subject import load_subject
from deepaudit.tools import make_tool
from deepaudit.tools.mm_bd import margins, top_p_value
from deepaudit.zoo import read_truth


def test_margin_is_the_targets_logit_less_the_largest_other():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]])
    assert margins(logits, torch.tensor([0, 2])).tolist() == [1.0, -6.0]


def test_top_p_value_is_small_for_an_outlying_class_and_calibrated_under_its_null():
    """A class whose maximum lies far above the others' gets a small p-value; with every class's
    maximum drawn alike (log-normal), the p-value is below 0.05 on at most about 5% of models
    (Bonferroni makes it conservative), and a model whose classes are all equal is no evidence."""
    assert top_p_value(np.r_[np.full(9, 20.0) + np.arange(9), 90.0]) < 1e-3
    rng = np.random.default_rng(0)
    rates = [top_p_value(np.exp(rng.normal(3.0, 0.2, 10))) < 0.05 for _ in range(2000)]
    assert np.mean(rates) <= 0.06
    assert np.isnan(top_p_value(np.full(10, 7.0)))


def test_mm_bd_names_the_smoke_trojans_target_from_random_inputs(smoke_zoo):
    subject = load_subject(smoke_zoo.trojan, budget=64)
    verdict = make_tool("mm_bd").audit(subject)
    assert verdict.target == read_truth(smoke_zoo.trojan)["target"]
    assert verdict.evidence["p_value"] == pytest.approx(1.0 - verdict.p_planted)


def test_mm_bd_refuses_settings_that_cannot_search():
    with pytest.raises(ValueError, match="steps"):
        make_tool("mm_bd", steps=0)
