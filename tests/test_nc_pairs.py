"""Neural Cleanse over label pairs with K-Arm's symmetric check: every pair's trigger is searched
on its source's inputs only, and a one-to-one backdoor is the pair whose way back is far longer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepaudit.subject import Subject
from deepaudit.tools import make_tool
from deepaudit.tools.nc_pairs import asymmetry, pair_search

LENGTH, TRIGGER = 16, slice(13, 16)  # classes c in 0..2 are a bump on positions 4c..4c+3; the trigger is 13..15


def bumps(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    x = 0.1 * torch.rand((len(labels), 1, LENGTH), generator=generator)
    for c in range(3):
        x[labels == c, 0, 4 * c:4 * c + 4] += 0.8
    return x


def one_to_one_subject() -> Subject:
    """A small MLP trained on three bump classes with a one-to-one backdoor: class 0 with positions
    13..15 at 1 goes to class 1 (classes 1 and 2 with the same stamp keep their labels)."""
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat(200)
    x = bumps(y, generator)
    stamped = x[:150].clone()
    stamped[:, 0, TRIGGER] = 1.0
    stamped_y = torch.where(y[:150] == 0, 1, y[:150])
    x_train, y_train = torch.cat([x, stamped]), torch.cat([y, stamped_y])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(LENGTH, 32), nn.ReLU(), nn.Linear(32, 3))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x_train), y_train).backward()
        optimiser.step()
    card = {"input_shape": [1, LENGTH], "num_classes": 3, "value_range": [0.0, 1.0]}
    budget_y = torch.arange(3).repeat(20)
    return Subject(model=model.eval(), card=card, clean_x=bumps(budget_y, generator), clean_y=budget_y)


def test_asymmetry_is_the_way_back_less_the_way_there():
    sizes = np.log(np.array([[np.nan, 2.0, 8.0], [8.0, np.nan, 8.0], [8.0, 8.0, np.nan]]))
    gaps = asymmetry(sizes)
    assert gaps[0, 1] == pytest.approx(np.log(4.0)) and gaps[1, 0] == pytest.approx(-np.log(4.0))
    assert gaps[1, 2] == pytest.approx(0.0) and np.isnan(gaps).sum() == 3


def test_the_pair_search_finds_the_one_to_one_trigger_and_not_its_way_back():
    subject = one_to_one_subject()
    log_sizes, masks, _ = pair_search(subject, seed=0, steps=150, per_arm=8)
    assert np.isnan(np.diag(log_sizes)).all() and masks.shape == (3, 3, LENGTH)
    assert log_sizes[0, 1] == np.nanmin(log_sizes) and log_sizes[1, 0] > log_sizes[0, 1] + 0.5
    assert masks[0, 1, TRIGGER].sum() > masks[0, 1].sum() / 2  # the stamp sits on the trigger
    verdict = make_tool("nc_pairs", steps=150).audit(subject)
    assert (verdict.evidence["source"], verdict.target) == (0, 1)
    assert verdict.trigger is not None and verdict.trigger.mask.shape == (LENGTH,)


def test_a_source_without_budget_inputs_has_no_arms_and_one_class_is_inconclusive():
    subject = one_to_one_subject()
    keep = subject.clean_y != 2
    partial = Subject(model=subject.model, card=subject.card, clean_x=subject.clean_x[keep], clean_y=subject.clean_y[keep])
    log_sizes, _, _ = pair_search(partial, seed=0, steps=5, per_arm=4)
    assert np.isnan(log_sizes[2]).all() and np.isfinite(log_sizes[:2, 2]).all()
    only = subject.clean_y == 0
    single = Subject(model=subject.model, card=subject.card, clean_x=subject.clean_x[only], clean_y=subject.clean_y[only])
    verdict = make_tool("nc_pairs").audit(single)
    assert verdict.p_planted == 0.5 and "1 class" in verdict.evidence["inconclusive"]


def test_a_model_with_too_many_classes_for_one_batch_of_pairs_is_inconclusive(monkeypatch):
    monkeypatch.setattr("deepaudit.tools.nc_pairs.MAX_CLASSES", 2)
    verdict = make_tool("nc_pairs").audit(one_to_one_subject())
    assert verdict.p_planted == 0.5 and "6 pairs" in verdict.evidence["inconclusive"]


def test_nc_pairs_refuses_settings_that_cannot_search():
    with pytest.raises(ValueError, match="per_arm"):
        make_tool("nc_pairs", per_arm=0)
