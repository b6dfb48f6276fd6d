"""ABS (artificial brain stimulation): one neuron set at a time, the stimulation analysis's
candidates, and the smoke trojan's target found by a trigger that excites its neuron."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepaudit.internals.capture import intervene
from deepaudit.subject import load_subject
from deepaudit.tools import make_tool
from deepaudit.tools.abs_scan import Candidate, excitation, leading, stimulate, stimulus
from deepaudit.zoo import read_truth


def test_a_stimulus_sets_a_unit_or_a_whole_channel_row_by_row():
    conv = nn.Sequential(nn.Conv1d(1, 3, 3, padding=1), nn.ReLU())
    values, x = torch.tensor([5.0, -1.0]), torch.randn(2, 1, 6)
    plain = conv(x)
    with intervene(conv, {"1": stimulus(2, values)}):
        out = conv(x)
    assert torch.equal(out[:, 2], values[:, None].expand(2, 6))
    assert torch.equal(out[:, :2], plain[:, :2])
    linear = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    with intervene(linear, {"1": stimulus(0, values)}):
        assert linear(torch.randn(2, 3))[:, 0].tolist() == [5.0, -1.0]


def test_excitation_is_the_neurons_mean_less_a_sliver_of_the_others():
    pre = torch.tensor([[[1.0, 3.0], [10.0, 10.0]]])  # one row, two channels of length two
    post = pre.clamp(min=0)
    assert excitation(pre, post, 0).item() == pytest.approx(2.0 + 2.0 - 1e-4 * 20.0)
    assert excitation(pre[..., 0], post[..., 0], 1).item() == pytest.approx(20.0 - 1e-4 * 2.0)


def planted_unit_model() -> nn.Sequential:
    """Four inputs, four hidden units, three classes: hidden unit 1 feeds class 2 alone and strongly
    (a trojan's neuron); the others read the inputs as a plain classifier would."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[1.0, 0.0, 0.5, 0.2], [0.2, 0.0, 1.0, 0.3], [0.1, 6.0, 0.1, 0.4]]))
        model[2].bias.zero_()
    return model


def test_stimulation_ranks_the_neuron_that_raises_one_class_for_every_input_first():
    model = planted_unit_model()
    x = torch.randn(30, 4)
    y = model(x).argmax(1)
    candidates = stimulate(model, x, y)
    best = leading(candidates, top=1)[0]
    assert (best.layer, best.neuron, best.label) == ("1", 1, 2)


def test_leading_keeps_one_candidate_per_class():
    found = [Candidate("a", 0, 1, 5.0), Candidate("a", 1, 1, 4.0), Candidate("b", 0, 2, 3.0)]
    assert [(c.neuron, c.label) for c in leading(found, top=2)] == [(0, 1), (0, 2)]


def test_abs_names_the_smoke_trojans_target_and_scores_it_above_its_clean_twin_and_decoy(smoke_zoo):
    """With the paper's neuron-only objective the trojan's trigger stands far above the clean
    models'; with the TrojAI objective (the default) it sends every input, the clean models' less."""
    subjects = {role: load_subject(getattr(smoke_zoo, role), budget=64) for role in ("trojan", "twin", "decoy")}
    target = read_truth(smoke_zoo.trojan)["target"]
    for tool, margin in ((make_tool("abs", logit_weight=0.0), 0.3), (make_tool("abs"), 0.1)):
        verdicts = {role: tool.audit(subject) for role, subject in subjects.items()}
        trojan = verdicts["trojan"]
        assert trojan.target == target
        assert trojan.p_planted == pytest.approx(max(trojan.evidence["reasr"]), abs=1e-4)
        assert trojan.p_planted > max(verdicts["twin"].p_planted, verdicts["decoy"].p_planted) + margin
        assert all(size <= 0.15 * 64 + 1e-4 for size in trojan.evidence["mask_l1"])


def test_abs_refuses_settings_that_cannot_search():
    with pytest.raises(ValueError, match="bound"):
        make_tool("abs", bound=0.0)
    with pytest.raises(ValueError, match="logit_weight"):
        make_tool("abs", logit_weight=-1.0)


def test_abs_is_inconclusive_on_a_model_without_relu_neurons(smoke_zoo):
    subject = load_subject(smoke_zoo.twin, budget=64)
    subject.model = nn.Sequential(nn.Flatten(), nn.Linear(64, subject.num_classes))
    verdict = make_tool("abs").audit(subject)
    assert verdict.p_planted == 0.5 and "no ReLU layer" in verdict.evidence["inconclusive"]
