"""Neural Cleanse contrasted with clean references: the reference's term in the search means what
it says, the search without a reference is Neural Cleanse's own, and the tool names the smoke
trojan's target with its evidence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepaudit.subject import load_subject
from deepaudit.tools import make_tool
from deepaudit.tools.nc_contrast import pair_gap, pair_transfer, specific_gap, transfer
from deepaudit.tools.nc_pairs import pair_search
from deepaudit.tools.neural_cleanse import NeuralCleanse, log_gap
from deepaudit.zoo import read_truth


def test_no_trigger_moves_the_model_while_the_same_model_as_reference_keeps_the_labels(smoke_zoo):
    subject = load_subject(smoke_zoo.trojan, budget=128)
    cleanse = NeuralCleanse(steps=60)
    _, _, solved = cleanse.search(subject, reference=subject.model, keep=0.5)
    assert not solved.any()
    masks, patterns, solved_alone = cleanse.search(subject)
    assert solved_alone[read_truth(smoke_zoo.trojan)["target"]]
    own_masks, own_patterns = cleanse.reverse_engineer(subject)
    assert torch.equal(masks, own_masks) and torch.equal(patterns, own_patterns)


class OneClass(torch.nn.Module):
    """A reference that puts every input in class 0, stamped or not: no trigger moves it."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.long), self.num_classes).float() * 10


def test_the_reference_keeps_its_own_classes_not_the_budgets_labels(smoke_zoo):
    """A reference wrong on 90% of the budget but never moved by a stamp does not stop the search:
    the labels it must keep are its own (a check against the budget's labels would solve nothing)."""
    subject = load_subject(smoke_zoo.trojan, budget=128)
    cleanse = NeuralCleanse(steps=60)
    _, _, solved = cleanse.search(subject, reference=OneClass(subject.num_classes), keep=0.5)
    _, _, solved_alone = cleanse.search(subject)
    assert solved_alone.sum() >= 2 and torch.equal(solved, solved_alone)


def test_nc_contrast_names_the_smoke_trojans_target_and_keeps_its_evidence(smoke_zoo):
    subject = load_subject(smoke_zoo.trojan, budget=128)
    verdict = make_tool("nc_contrast", steps=100).audit(subject)
    assert verdict.target == read_truth(smoke_zoo.trojan)["target"]
    sizes = verdict.evidence["log_mask_size"]
    assert set(sizes) == {"rehead", "student"} and all(len(v) == subject.num_classes for v in sizes.values())
    assert verdict.evidence["log_gap"] == pytest.approx(log_gap(np.mean(list(sizes.values()), axis=0)), abs=1e-3)
    plain, moved = np.array(verdict.evidence["plain_log_mask_size"]), np.array(verdict.evidence["transfer"])
    assert plain.shape == moved.shape == (subject.num_classes,) and ((moved >= 0) & (moved <= 1)).all()
    assert verdict.evidence["specific_gap"] == pytest.approx(specific_gap(plain, moved), abs=1e-3)
    assert verdict.evidence["pair_gap"] >= 0  # version 6: the label-pair search ran
    assert verdict.trigger is not None and verdict.trigger.mask.shape == tuple(subject.input_shape[1:])
    student = verdict.evidence["students"]["student"]  # trained in rounds of 600 until it agrees on 95%, at most 2400
    assert student["steps"] in (600, 1200, 1800, 2400) and (student["agreement"] >= 0.95 or student["steps"] == 2400)


def test_repeats_add_runs_with_their_own_seeds_and_average_them(smoke_zoo):
    subject = load_subject(smoke_zoo.trojan, budget=128)
    once = make_tool("nc_contrast", steps=60).audit(subject).evidence["log_mask_size"]
    twice = make_tool("nc_contrast", steps=60, repeats=2).audit(subject).evidence
    sizes = twice["log_mask_size"]
    assert set(sizes) == {"rehead", "student", "rehead-1", "student-1"}
    assert sizes["rehead"] == once["rehead"] and sizes["student"] == once["student"]  # repeat 0 is the single run
    assert sizes["student-1"] != sizes["student"]  # another seed: another student and search
    assert twice["log_gap"] == pytest.approx(log_gap(np.mean(list(sizes.values()), axis=0)), abs=1e-3)


def test_log_gap_is_the_distance_of_the_smallest_class_below_the_median():
    assert log_gap(np.log(np.array([1.0, 4.0, 4.0, 4.0, 8.0]))) == pytest.approx(np.log(4.0))
    assert log_gap(np.zeros(10)) == 0.0


def test_the_specific_gap_discounts_a_small_trigger_that_moves_the_references_too():
    log_sizes = np.log(np.array([1.0, 4.0, 4.0, 4.0, 4.0]))
    assert specific_gap(log_sizes, np.zeros(5)) == pytest.approx(np.log(4.0))  # its own: the whole gap
    assert specific_gap(log_sizes, np.array([1.0, 0, 0, 0, 0])) == pytest.approx(0.0)  # a shortcut of every model
    assert specific_gap(log_sizes, np.array([0.75, 0, 0, 0, 0])) == pytest.approx(0.25 * np.log(4.0))


def test_transfer_is_the_share_of_other_class_inputs_a_stamp_moves_in_the_reference(smoke_zoo):
    subject = load_subject(smoke_zoo.trojan, budget=128)
    masks, patterns, _ = NeuralCleanse(steps=60).search(subject)
    stuck = transfer(OneClass(subject.num_classes), subject.clean_x, masks, patterns)
    assert stuck.shape == (subject.num_classes,) and (stuck == 0).all()  # nothing moves a one-class reference
    target = read_truth(smoke_zoo.trojan)["target"]
    mask, pattern = torch.zeros_like(masks), patterns.clone()
    mask[target] = 1.0  # a stamp that replaces the whole input by the target's pattern
    whole = transfer(subject.model, subject.clean_x, mask, pattern)
    with torch.no_grad():
        pattern_class = int(subject.model(pattern[target : target + 1]).argmax(1))
    assert whole[target] == (1.0 if pattern_class == target else 0.0)
    assert (np.delete(whole, target) == 0).all()  # an empty mask moves no input anywhere


def test_nc_contrast_refuses_settings_that_cannot_work():
    with pytest.raises(ValueError, match="keep"):
        make_tool("nc_contrast", keep=1.5)
    with pytest.raises(ValueError, match="steps"):
        make_tool("nc_contrast", steps=0)
    with pytest.raises(ValueError, match="repeats"):
        make_tool("nc_contrast", repeats=0)
    with pytest.raises(ValueError, match="student_max_steps"):
        make_tool("nc_contrast", student_max_steps=100)  # less than one round of distillation
    with pytest.raises(ValueError, match="pair_steps"):
        make_tool("nc_contrast", pair_steps=-1)


def test_the_restarted_search_keeps_each_class_from_the_start_with_the_smaller_mask(smoke_zoo):
    from deepaudit.tools.nc_contrast import RESTART_BATCH, RESTART_STRIDE, restarted_search
    from deepaudit.tools.neural_cleanse import log_mask_sizes
    subject = load_subject(smoke_zoo.trojan, budget=64)
    masks, patterns, solved = restarted_search(subject, seed=3, steps=40, target_asr=0.9)
    starts = [NeuralCleanse(seed=3 + RESTART_STRIDE * r, steps=40, target_asr=0.9, batch_size=RESTART_BATCH).search(subject)
              for r in range(2)]
    sizes = np.stack([log_mask_sizes(m, s) for m, _, s in starts])
    assert np.allclose(log_mask_sizes(masks, solved), sizes.min(0))
    for cls, start in enumerate(sizes.argmin(0)):
        assert torch.equal(patterns[cls], starts[start][1][cls])


def test_the_pair_gap_judges_each_pair_against_the_models_median_pair():
    sizes = np.log(np.array([[np.nan, 4.0, 4.0], [4.0, np.nan, 1.0], [4.0, 4.0, np.nan]]))
    moved = np.array([[np.nan, 0.9, 0.9], [0.9, np.nan, 0.1], [0.9, 0.9, np.nan]])
    assert pair_gap(sizes, moved) == pytest.approx(np.log(4.0) * 0.8)  # (1 -> 2): small, and moves the references less
    assert pair_gap(sizes, np.where(np.isnan(moved), np.nan, 0.9)) == 0.0  # moves them as much as the median pair
    level = np.log(np.where(np.isnan(sizes), np.nan, 4.0))
    assert pair_gap(level, moved) == 0.0  # no pair smaller than the median
    assert pair_gap(np.full((3, 3), np.nan), moved) == 0.0  # no pair searched


def test_pair_transfer_is_the_share_of_a_source_classs_inputs_a_pairs_stamp_moves(smoke_zoo):
    subject = load_subject(smoke_zoo.trojan, budget=64)
    sizes, masks, patterns = pair_search(subject, seed=0, steps=5, per_arm=2)
    stuck = pair_transfer(OneClass(subject.num_classes), subject.clean_x, masks, patterns)
    assert np.isnan(np.diag(stuck)).all() and np.isnan(stuck[1:]).all()  # the one-class reference has only class 0
    assert (stuck[0, 1:] == 0).all()  # and no stamp moves it
    whole, target = torch.zeros_like(masks), read_truth(smoke_zoo.trojan)["target"]
    whole[:, target] = 1.0  # every pair into the target replaces the whole input by its pattern
    shares = pair_transfer(subject.model, subject.clean_x, whole, patterns)
    with torch.no_grad():
        lands = subject.model(patterns[:, target]).argmax(1) == target
    sources = [s for s in range(subject.num_classes) if s != target and np.isfinite(shares[s, target])]
    assert sources and all(shares[s, target] == float(lands[s]) for s in sources)


def test_without_the_pair_search_the_statistic_is_version_5s(smoke_zoo):
    subject = load_subject(smoke_zoo.trojan, budget=64)
    without = make_tool("nc_contrast", steps=40, pair_steps=0).audit(subject)
    with_pairs = make_tool("nc_contrast", steps=40, pair_steps=20).audit(subject)
    assert without.evidence["pair_gap"] is None
    for key in ("log_gap", "specific_gap", "log_mask_size", "transfer"):
        assert without.evidence[key] == with_pairs.evidence[key]  # the pair search changes nothing else
    assert with_pairs.p_planted >= without.p_planted and with_pairs.evidence["pair_gap"] >= 0

