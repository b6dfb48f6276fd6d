"""Every registered tool answers in the shape its protocol promises (detectors, skylines,
removers, localizers) without touching the audited model, and the key detectors do what they
claim on the smoke trojan."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from deepaudit.game.metrics import auroc
from deepaudit.game.referee import input_track_batch, trigger_success
from deepaudit.internals import module_names, run_with_cache
from deepaudit.subject import load_subject
from deepaudit.tools import TOOLS, Verdict, make_tool, roles
from deepaudit.zoo import read_truth

EXPECTED_ROLES = {"neural_cleanse": ["model"], "mahalanobis": ["model", "input"], "strip": ["input"],
                  "weight_stats": ["model"], "random": ["model", "input"], "meta_classifier": ["skyline"],
                  **{name: ["remover"] for name in ("finetune", "fineprune", "nc_unlearn", "anp", "lat")},
                  **{name: ["localizer"] for name in ("act_patch", "attr_patch", "captum_conductance",
                                                      "ablation_search")}}
FAST = {"neural_cleanse": {"steps": 60}, "mahalanobis": {"candidates": 16}}


def test_registry_roles():
    """The registry lists the known tools with the roles their protocols imply."""
    assert {name: roles(name) for name in EXPECTED_ROLES if name in TOOLS} == EXPECTED_ROLES
    assert all(TOOLS[name].name == name for name in TOOLS)


def test_unknown_tool_raises():
    """make_tool on an unknown name is a ValueError naming it."""
    with pytest.raises(ValueError, match="no_such_tool"):
        make_tool("no_such_tool")


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_tool_outputs_are_valid(smoke_zoo, name):
    """Each tool's answers are well-formed for its roles, and the audited model is left unchanged."""
    subject = load_subject(smoke_zoo.trojan, budget=64)
    k, shape = subject.num_classes, subject.input_shape
    tool_roles = roles(name)
    assert tool_roles, f"{name} implements no protocol"
    if not set(tool_roles) & {"model", "input", "skyline", "remover", "localizer"}:
        pytest.skip(f"no output check here for roles {tool_roles}")
    weights_before = {key: v.clone() for key, v in subject.model.state_dict().items()}
    tool = make_tool(name, **FAST.get(name, {}))
    if "model" in tool_roles:
        verdict = tool.audit(subject)
        assert isinstance(verdict, Verdict)
        assert 0.0 <= verdict.p_planted <= 1.0
        assert verdict.target is None or 0 <= verdict.target < k
        if verdict.trigger is not None:
            assert verdict.trigger.mask.shape == shape[1:]
            assert verdict.trigger.pattern.shape == shape
            assert verdict.trigger.apply(subject.clean_x).shape == subject.clean_x.shape
        json.dumps(verdict.evidence)  # evidence goes into the JSON store
    if "input" in tool_roles:
        x = subject.clean_x[:37]
        scores = np.asarray(make_tool(name).fit(subject).score(x))
        assert scores.shape == (37,)
        assert np.isfinite(scores).all()
    if "skyline" in tool_roles:
        features = tool.features(subject)
        assert features.ndim == 1 and np.isfinite(features).all()
        assert features.shape == tool.features(load_subject(smoke_zoo.twin, budget=64)).shape
    if "remover" in tool_roles:
        edited = tool.remove(subject)
        assert isinstance(edited, nn.Module) and edited is not subject.model
        assert {key: v.shape for key, v in edited.state_dict().items()} == \
               {key: v.shape for key, v in weights_before.items()}
        with torch.no_grad():
            logits = edited(subject.clean_x)
        assert logits.shape == (len(subject.clean_x), k) and torch.isfinite(logits).all()
    if "localizer" in tool_roles:
        units = tool.localize(subject)
        _, cache = run_with_cache(subject.model, subject.clean_x[:1], module_names(subject.model))
        widths = {layer: out.shape[1] for layer, out in cache.items()}
        assert units and len(set(units)) == len(units)
        assert all(layer in widths and 0 <= index < widths[layer] for layer, index in units)
    # no tool may change the model it audits
    assert all(torch.equal(weights_before[key], v) for key, v in subject.model.state_dict().items())


def test_verdict_rejects_non_probability():
    """A Verdict refuses p_planted outside [0, 1] or NaN."""
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            Verdict(p_planted=bad)


def test_neural_cleanse_finds_target(smoke_zoo):
    """Neural Cleanse recovers the smoke trojan's true target, with a trigger that works."""
    truth = read_truth(smoke_zoo.trojan)
    subject = load_subject(smoke_zoo.trojan)
    verdict = make_tool("neural_cleanse", steps=300).audit(subject)
    assert verdict.target == truth["target"]
    assert trigger_success(subject.model, verdict.trigger, truth) > 0.9


def test_mahalanobis_flags_triggered_inputs(smoke_zoo):
    """Mahalanobis input scores separate triggered from clean held-out inputs (AUROC > 0.8)."""
    truth = read_truth(smoke_zoo.trojan)
    x, is_triggered = input_track_batch(truth, seed=0)
    assert 0 < is_triggered.sum() < len(is_triggered)
    scores = make_tool("mahalanobis").fit(load_subject(smoke_zoo.trojan)).score(x)
    assert auroc(scores[~is_triggered], scores[is_triggered]) > 0.8


def test_random_baseline_is_reproducible(smoke_zoo):
    """The random baseline gives the same answers twice, and different answers per model."""
    answers = []
    for folder in (smoke_zoo.trojan, smoke_zoo.trojan, smoke_zoo.twin):
        subject = load_subject(folder, budget=32)
        verdict = make_tool("random").audit(subject)
        scores = make_tool("random").fit(subject).score(subject.clean_x)
        answers.append((verdict.p_planted, verdict.target, verdict.trigger.mask.tobytes(), scores.tobytes()))
    assert answers[0] == answers[1]
    assert answers[0] != answers[2]
