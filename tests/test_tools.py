"""Every registered vision tool answers in the shape its roles promise (detect, features,
inputs, remove, localize) without touching the audited model; the registry checks what it is
told; the key detectors do what they claim on the smoke trojan."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from deepaudit.internals import module_names, run_with_cache
from deepaudit.metrics import auroc
from deepaudit.registry import RegistryError
from deepaudit.subject import load_subject
from deepaudit.tools import TOOLS, Verdict, make_tool, register_tool, tool_spec, tool_specs
from deepaudit.zoo import family, read_truth

EXPECTED_ROLES = {"neural_cleanse": ("detect",), "mahalanobis": ("detect", "inputs"), "strip": ("inputs",),
                  "nc_reference": ("detect",), "nc_rehead": ("detect",), "combine_fisher": ("detect",),
                  "combine_stack": ("features",), "mntd": ("detect",), "mm_bd": ("detect",),
                  "combine_stouffer": ("detect",), "nc_distill": ("detect",),
                  "combine_stouffer_distill": ("detect",), "combine_fisher_distill": ("detect",),
                  "nc_contrast": ("detect",), "combine_stouffer_contrast": ("detect",), "abs": ("detect",),
                  "nc_pairs": ("detect",), "free_eagle": ("detect",), "warp_cleanse": ("detect",),
                  "weight_stats": ("detect",), "random": ("detect", "inputs"), "meta_classifier": ("features",),
                  **{name: ("remove",) for name in ("finetune", "fineprune", "nc_unlearn", "anp", "lat")},
                  **{name: ("localize",) for name in ("act_patch", "attr_patch", "captum_conductance",
                                                      "ablation_search")}}
FAST = {"neural_cleanse": {"steps": 60}, "mahalanobis": {"candidates": 16}, "nc_reference": {"steps": 60, "shadows": 3},
        "nc_rehead": {"steps": 60}, "combine_fisher": {"steps": 60}, "combine_stack": {"steps": 60, "mntd_shadows": 4},
        "mntd": {"shadows": 4, "steps": 20}, "mm_bd": {"steps": 60},
        "combine_stouffer": {"steps": 60, "mntd_shadows": 4}, "nc_distill": {"steps": 60, "students": 1},
        "combine_stouffer_distill": {"steps": 60, "mntd_shadows": 4}, "combine_fisher_distill": {"steps": 60},
        "nc_contrast": {"steps": 60}, "nc_pairs": {"steps": 60}, "free_eagle": {"steps": 100}, "warp_cleanse": {"steps": 60},
        "combine_stouffer_contrast": {"steps": 60, "mntd_shadows": 4}}


def test_registry_declares_each_tool_once_with_its_tags():
    """Every vision tool is registered with the roles, kind and needs it declares, and every
    family's tools are found by walking the tools package (no list of names anywhere)."""
    assert {s.name: s.roles for s in tool_specs(family="vision")} == EXPECTED_ROLES
    assert tool_spec("random").kind == "baseline" and tool_spec("meta_classifier").kind == "skyline"
    assert tool_spec("neural_cleanse").provides == "trigger" and "trigger" in tool_spec("act_patch").needs
    assert {s.name for s in tool_specs(family="lm", role="probe")} >= {"probe_logreg", "probe_ccs", "probe_random"}
    assert {s.name for s in tool_specs(family="training")} == {"fourier_program", "fourier_sparsity", "weight_norm"}
    assert len(list(TOOLS)) == len(set(TOOLS))


def test_registry_refuses_what_it_cannot_check():
    """Unknown tools, roles, kinds, needs and parameters, and parameters of the wrong type, are
    errors naming them; a class must have the methods of each role it claims."""
    with pytest.raises(RegistryError, match="no_such_tool"):
        make_tool("no_such_tool")
    with pytest.raises(RegistryError, match="no parameters"):
        make_tool("neural_cleanse", stepz=3)
    with pytest.raises(RegistryError, match="parameter 'steps' must be of type int"):
        make_tool("neural_cleanse", steps="abc")
    cleanse = tool_spec("neural_cleanse")
    assert isinstance(cleanse.params(lr=1)["lr"], float)  # an int stands for a float, and is one
    assert cleanse.digest(cleanse.params(lr=1)) == cleanse.digest(cleanse.params(lr=1.0))
    with pytest.raises(RegistryError, match="lacks the methods"):
        register_tool("broken_toy", roles=("detect",), families=("vision",))(type("Broken", (), {}))
    with pytest.raises(RegistryError, match="unknown role 'judge'"):
        register_tool("broken_toy", roles=("judge",), families=("vision",))(type("Broken", (), {"audit": None}))
    assert "broken_toy" not in TOOLS


def test_parameter_digest_changes_with_parameters_and_version():
    """A cell is keyed by a digest of the tool's parameters: equal for equal parameters, new for
    a changed one or a new version of the tool."""
    spec = tool_spec("neural_cleanse")
    default = spec.digest(spec.params())
    assert spec.digest(spec.params(steps=300)) == default
    assert spec.digest(spec.params(steps=50)) != default
    assert tool_spec("ft").params()["max_change"] is None and tool_spec("ft-l").params()["max_change"] == 5e-4


@pytest.mark.parametrize("name", sorted(EXPECTED_ROLES))
def test_tool_outputs_are_valid(smoke_zoo, name):
    """Each tool's answers are well-formed for its roles, and the audited model is left unchanged."""
    organism = family("vision").open(smoke_zoo.trojan, 0, 64, {})
    subject = organism.subject()  # shares the organism's findings (the recovered trigger)
    k, shape = subject.num_classes, subject.input_shape
    tool_roles = tool_spec(name).roles
    weights_before = {key: v.clone() for key, v in subject.model.state_dict().items()}
    tool = make_tool(name, **FAST.get(name, {}))
    if "detect" in tool_roles:
        verdict = tool.audit(subject)
        assert isinstance(verdict, Verdict)
        assert 0.0 <= verdict.p_planted <= 1.0
        assert verdict.target is None or 0 <= verdict.target < k
        if verdict.trigger is not None and verdict.trigger.kind == "stamp":
            assert verdict.trigger.mask.shape == shape[1:]
            assert verdict.trigger.pattern.shape == shape
        if verdict.trigger is not None and verdict.trigger.kind == "warp":
            assert verdict.trigger.flow.shape == (len(shape) - 1, *shape[1:])
        if verdict.trigger is not None:
            assert verdict.trigger.apply(subject.clean_x).shape == subject.clean_x.shape
        json.dumps(verdict.evidence)  # evidence goes into the JSON store
    if "inputs" in tool_roles:
        x = subject.clean_x[:37]
        scores = np.asarray(make_tool(name).fit(subject).score(x))
        assert scores.shape == (37,)
        assert np.isfinite(scores).all()
    if "features" in tool_roles:
        features = tool.features(subject)
        assert features.ndim == 1 and np.isfinite(features).all()
        assert features.shape == tool.features(load_subject(smoke_zoo.twin, budget=64)).shape
    if "remove" in tool_roles:
        edited = tool.remove(subject)
        assert isinstance(edited, nn.Module) and edited is not subject.model
        assert {key: v.shape for key, v in edited.state_dict().items()} == \
               {key: v.shape for key, v in weights_before.items()}
        with torch.no_grad():
            logits = edited(subject.clean_x)
        assert logits.shape == (len(subject.clean_x), k) and torch.isfinite(logits).all()
    if "localize" in tool_roles:
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
    kit = family("vision").open(smoke_zoo.trojan, 0, 256, {}).kit
    subject = load_subject(smoke_zoo.trojan)
    verdict = make_tool("neural_cleanse", steps=300).audit(subject)
    assert verdict.target == read_truth(smoke_zoo.trojan)["target"]
    assert kit.behaviour_rate(subject.model, verdict.trigger) > 0.9


def test_mahalanobis_flags_triggered_inputs(smoke_zoo):
    """Mahalanobis input scores separate triggered from clean held-out inputs (AUROC > 0.8)."""
    kit = family("vision").open(smoke_zoo.trojan, 0, 256, {}).kit
    x, is_triggered = kit.flagged_inputs(seed=0)
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


def test_a_tool_is_sized_to_its_allowance_or_says_how_much_it_needs():
    """The step-count rule every search shares: as many steps as fit (at most the default 300),
    and a clear TooLittleTime naming the seconds needed when even the least useful count does not."""
    from deepaudit.tools.sizing import Allowance, TooLittleTime

    allowance = Allowance(seconds=10.0, seconds_per_example=1e-4, inputs=256, classes=10)
    per_step = allowance.per_step(32)
    assert allowance.steps(per_step, 50) == {"steps": 104}  # 10 s / 0.096 s per step
    assert Allowance(1e4, 1e-4, 256, 10).steps(per_step, 50) == {"steps": 300}
    with pytest.raises(TooLittleTime, match=r"needs about 19\.2 s for 100 steps of two searches; 10\.0 s left"):
        allowance.steps(2 * per_step, 100, what="steps of two searches")
    twenty = Allowance(seconds=20.0, seconds_per_example=1e-4, inputs=256, classes=10)
    sized = {name: tool_spec(name).sizing(twenty)["steps"] for name in ("neural_cleanse", "nc_rehead", "mm_bd")}
    assert sized == {"neural_cleanse": 208, "nc_rehead": 104, "mm_bd": 222}  # batches of 32, 2 x 32 and 30
    # nc_contrast first makes its two references (the re-head one forward pass of the budget, 0.03 s,
    # and a round of the student's distillation 15.4 s here), then searches (up to its default 250 steps),
    # then gives the student more rounds
    sizing = tool_spec("nc_contrast").sizing
    # (a step costs five plain searches' steps: two contrasted ones run the model and a reference, the
    # model's own search the model alone); the label-pair search (100 steps of 90 arms x 8 inputs, 21.6 s)
    # only where 100 search steps fit beside it
    assert sizing(Allowance(70.0, 1e-4, 256, 10)) == {"steps": 113, "student_max_steps": 600, "pair_steps": 0}
    assert sizing(Allowance(100.0, 1e-4, 256, 10)) == {"steps": 131, "student_max_steps": 600, "pair_steps": 100}
    assert sizing(Allowance(180.0, 1e-4, 256, 10)) == {"steps": 250, "student_max_steps": 1200, "pair_steps": 100}
    assert sizing(Allowance(1e4, 1e-4, 256, 10)) == {"steps": 250, "student_max_steps": 2400, "pair_steps": 100}
    with pytest.raises(TooLittleTime, match=r"needs about 15\.4 s for its two references alone; 15\.0 s left"):
        sizing(Allowance(15.0, 1e-4, 256, 10))
    with pytest.raises(TooLittleTime, match=r"needs about 48\.0 s for 100 steps of three searches; 4\.6 s left"):
        sizing(twenty)
