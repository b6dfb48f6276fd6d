"""Detectors judged against a clean reference (issue 15): shadow models the auditor trains itself,
cached once per architecture and budget; the model's own re-headed copy; their calibrated
p-values and Fisher's combination of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepaudit.subject import load_subject
from deepaudit.tools import make_tool
from deepaudit.tools.combine_fisher import fisher
from deepaudit.tools.combine_stouffer import stouffer
from deepaudit.tools.nc_rehead import index_p_value
from deepaudit.tools.rehead import refitted_head
from deepaudit.tools.shadow import Reference, accuracy, reference, shadow_cost
from deepaudit.weights import looks_like_pickle
from deepaudit.zoo import read_truth


def test_reference_p_value_points_at_the_class_far_below_its_shadows():
    """A class whose value lies far below its shadows' is the most extreme one with a small p;
    a model like its shadows gets p = 1 after Bonferroni, and a class on which the shadows agree
    exactly cannot make a small difference extreme (its spread is floored)."""
    rng = np.random.default_rng(0)
    shadows = rng.normal(0.0, 1.0, size=(12, 10))
    shadows[:, 3] = 0.0  # every shadow agrees on class 3
    planted = Reference(np.r_[np.zeros(6), -6.0, np.zeros(3)], shadows, 0.0)
    p, worst = planted.p_value(low=True)
    assert worst == 6 and p < 1e-4
    assert Reference(shadows.mean(0), shadows, 0.0).p_value(low=True)[0] == 1.0
    nudged = shadows.mean(0).copy()
    nudged[3] = -0.05
    assert nudged[3] - shadows[:, 3].mean() < 0 and Reference(nudged, shadows, 0.0).p_value(low=True)[0] == 1.0


def test_index_p_value_is_calibrated_under_its_null():
    """Under its null (independent Gaussian changes) the anomaly index's p-value is below 0.05 on
    about 5% of models, and it falls as the index grows."""
    rng = np.random.default_rng(1)
    draws = rng.standard_normal((2000, 10))
    median = np.median(draws, axis=1, keepdims=True)
    index = (median[:, 0] - draws.min(1)) / (1.4826 * np.median(np.abs(draws - median), axis=1))
    rate = np.mean([index_p_value(i, 10) < 0.05 for i in index])
    assert 0.035 < rate < 0.065
    assert index_p_value(1.0, 10) > index_p_value(3.0, 10) > index_p_value(8.0, 10) > 0


def test_fisher_combines_p_values():
    """One p-value is its own combination; two small ones combine to a smaller one; ones at 1 stay 1."""
    assert fisher([0.3]) == pytest.approx(0.3)
    assert fisher([0.01, 0.02]) < 0.01
    assert fisher([1.0, 1.0]) == pytest.approx(1.0)


def test_stouffer_combines_parts_so_that_no_single_one_decides():
    """Parts at 0.5 say nothing; two parts at 0.9 combine to more than 0.9; one part at 1 - 1e-9
    beside three at 0.3 does not reach what Fisher's method would make of it."""
    assert stouffer([0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert stouffer([0.9, 0.9]) > 0.9
    assert stouffer([1 - 1e-9, 0.3, 0.3, 0.3]) < 0.99 < 1 - fisher([1e-9, 0.7, 0.7, 0.7])


def test_shadows_are_trained_once_cached_as_safetensors_and_keyed_by_budget(smoke_zoo, deepaudit_home):
    """The first request trains the shadows (a build cost), the second reads them (none); the
    files are safetensors, never pickles; another budget is another shadow set."""
    subject = load_subject(smoke_zoo.twin, budget=64, seed=0)
    first = reference(subject, "accuracy", {}, accuracy, accuracy(subject), count=2)
    again = reference(subject, "accuracy", {}, accuracy, accuracy(subject), count=2)
    assert first.build_cpu_s > 0 and again.build_cpu_s == 0 and shadow_cost(subject, count=2) > 0
    np.testing.assert_array_equal(first.shadows, again.shadows)
    assert first.shadows.shape == (2, 1) and (first.shadows > 0.3).all()  # clean shadows learn digits
    files = sorted((deepaudit_home / "cache" / "shadows").rglob("shadow-*"))
    assert files and not any(looks_like_pickle(f.read_bytes()[:4]) for f in files)
    other = load_subject(smoke_zoo.twin, budget=64, seed=1)
    assert shadow_cost(other, count=2) == 0.0


def test_refitted_head_refits_and_always_restores(smoke_zoo):
    """Inside the block the output layer is retrained on the budget (it still classifies the budget);
    after it, also after an exception, the model's weights are exactly what they were."""
    subject = load_subject(smoke_zoo.trojan, budget=128)
    before = {k: v.clone() for k, v in subject.model.state_dict().items()}
    with refitted_head(subject.model, subject.clean_x, subject.clean_y) as model:
        assert not torch.equal(model.head.weight, before["head.weight"])
        assert torch.equal(model.fc1.weight, before["fc1.weight"])
        assert accuracy(subject)[0] > 0.8
    assert all(torch.equal(before[k], v) for k, v in subject.model.state_dict().items())
    with pytest.raises(RuntimeError, match="inside"), refitted_head(subject.model, subject.clean_x, subject.clean_y):
        raise RuntimeError("inside")
    assert all(torch.equal(before[k], v) for k, v in subject.model.state_dict().items())



def test_refitted_head_reads_the_heads_inputs_once_with_the_same_result(smoke_zoo, monkeypatch):
    """The refit trains the head on features computed once (``head_inputs``) and ends where
    training through the whole model ends; a model whose output is not the head's (here scaled
    after it) gets no features and is refitted through its forward pass."""
    from deepaudit.tools import rehead

    subject = load_subject(smoke_zoo.trojan, budget=128)
    with refitted_head(subject.model, subject.clean_x, subject.clean_y, seed=3) as model:
        cached = model.head.weight.clone()
    monkeypatch.setattr(rehead, "head_inputs", lambda *_: None)
    with refitted_head(subject.model, subject.clean_x, subject.clean_y, seed=3) as model:
        through_model = model.head.weight.clone()
    torch.testing.assert_close(cached, through_model)
    assert not torch.equal(cached, subject.model.head.weight)
    monkeypatch.undo()
    scaled = torch.nn.Sequential(subject.model, torch.nn.Hardtanh(-0.5, 0.5))
    assert rehead.head_inputs(scaled, subject.model.head, subject.clean_x) is None
    features = rehead.head_inputs(subject.model, subject.model.head, subject.clean_x)
    assert features is not None and features.shape == (128, subject.model.head.in_features)

def test_nc_reference_finds_the_smoke_target_and_says_when_its_shadows_do_not_fit(smoke_zoo):
    """Against clean shadows, the smoke trojan's target is the class whose mask is smallest;
    shadows held to an impossible accuracy gap make the answer inconclusive, with the reason."""
    subject = load_subject(smoke_zoo.trojan)
    verdict = make_tool("nc_reference", steps=150, shadows=4).audit(subject)
    assert verdict.target == read_truth(smoke_zoo.trojan)["target"] and verdict.p_planted > 0.9
    weak = make_tool("nc_reference", steps=150, shadows=4, max_gap=-1.0).audit(subject)
    assert weak.p_planted == 0.5 and "too weak to be a reference" in weak.evidence["inconclusive"]


def test_a_verdict_is_computed_once_per_organism_whoever_asks_first(smoke_zoo, monkeypatch):
    """A tool's verdict in the game and a combination's request for it are one computation: the
    combination reads the part's answer (listed as a shared finding), and the part reads the
    combination's; another seed or other parameters are another finding."""
    from deepaudit.game.worker import answer
    from deepaudit.tools.findings import verdict_key, verdict_of
    from deepaudit.tools.weight_stats import WeightStats
    from deepaudit.zoo import family

    calls = []
    audit = WeightStats.audit
    monkeypatch.setattr(WeightStats, "audit", lambda self, subject: calls.append(1) or audit(self, subject))
    ask = [("weight_stats", {}, ("detect",))]

    organism = family("vision").open(smoke_zoo.trojan, 0, 64, {})  # the part runs first
    reply, = answer(organism, ask, {}, 0)
    assert reply["used"] == [] and len(calls) == 1
    assert verdict_of(organism.subject(), "weight_stats", 0).to_json() == reply["values"]["detect"] and len(calls) == 1

    organism = family("vision").open(smoke_zoo.trojan, 0, 64, {})  # the combination asks first
    first = verdict_of(organism.subject(), "weight_stats", 0)
    reply, = answer(organism, ask, {}, 0)
    assert len(calls) == 2 and reply["used"] == ["verdict:weight_stats"] and "verdict:weight_stats" in reply["shared"]
    assert reply["values"]["detect"] == first.to_json()
    verdict_of(organism.subject(), "weight_stats", 1)
    assert len(calls) == 3 and verdict_key("neural_cleanse", {"steps": 7}) != verdict_key("neural_cleanse", {})


def test_a_combination_asking_for_a_finding_provider_reads_the_shared_finding(smoke_zoo, monkeypatch):
    """A combination that asks for the verdict of the tool providing its family's shared finding
    (Neural Cleanse's trigger for vision, the trigger search's for language models) reads that
    finding: the search runs once for the combination and the tool's own cell; other settings are
    another computation."""
    from deepaudit.game.worker import answer
    from deepaudit.tools.findings import verdict_of
    from deepaudit.tools.neural_cleanse import NeuralCleanse
    from deepaudit.zoo import family

    calls = []
    audit = NeuralCleanse.audit
    monkeypatch.setattr(NeuralCleanse, "audit", lambda self, subject: calls.append(1) or audit(self, subject))
    organism = family("vision").open(smoke_zoo.trojan, 0, 64, {})
    first = verdict_of(organism.subject(), "neural_cleanse", 0)
    reply, = answer(organism, [("neural_cleanse", {}, ("detect",))], {}, 0)
    assert len(calls) == 1 and reply["used"] == ["trigger"] and reply["values"]["detect"] == first.to_json()
    verdict_of(organism.subject(), "neural_cleanse", 0, steps=5)
    assert len(calls) == 2


def test_thresholds_label_and_are_chosen_by_their_rule():
    """At most the allowed share of clean organisms is told "backdoor suspected" and of planted ones
    "no backdoor found" on the organisms they were chosen on; an inconclusive answer stays so."""
    from deepaudit.verdicts import CLEARED, INCONCLUSIVE, SUSPECTED, Thresholds, choose_thresholds

    rng = np.random.default_rng(0)
    planted = np.r_[np.zeros(100, bool), np.ones(100, bool)]
    probs = np.clip(np.r_[rng.beta(2, 5, 100), rng.beta(5, 2, 100)], 0, 1)
    chosen = choose_thresholds(probs, planted)
    labels = np.array([chosen.label(p) for p in probs])
    assert np.mean(labels[~planted] == SUSPECTED) <= 0.10 < np.mean(labels[~planted] == SUSPECTED) + 0.02
    assert np.mean(labels[planted] == CLEARED) <= 0.10 and chosen.clear <= chosen.suspect
    assert chosen.label(0.999, inconclusive=True) == INCONCLUSIVE
    with pytest.raises(ValueError, match="clear <= suspect"):
        Thresholds(0.4, 0.6, "")
    with pytest.raises(ValueError, match="clean and planted"):
        choose_thresholds(probs[:100], planted[:100])


def test_thresholds_chosen_on_every_draw_keep_each_draw_within_the_share():
    """With several draws, "backdoor suspected" starts at the highest draw's own threshold: a draw
    whose clean organisms sit high stays within the share, where pooling would let it exceed it."""
    from deepaudit.verdicts import SUSPECTED, choose_thresholds, choose_thresholds_every_draw

    rng = np.random.default_rng(1)
    planted = np.r_[np.zeros(100, bool), np.ones(100, bool)]
    low = np.r_[rng.beta(2, 6, 100), rng.beta(5, 2, 100)]
    high = np.r_[rng.beta(4, 4, 100), rng.beta(5, 2, 100)]  # this draw's clean organisms sit higher
    chosen = choose_thresholds_every_draw([(low, planted), (high, planted)], clean_suspected=0.07)
    for probs in (low, high):
        assert np.mean([chosen.label(p) == SUSPECTED for p in probs[~planted]]) <= 0.07
    assert chosen.suspect == choose_thresholds(high, planted, clean_suspected=0.07).suspect
    pooled = choose_thresholds(np.r_[low, high], np.r_[planted, planted], clean_suspected=0.07)
    assert np.mean(high[~planted] >= pooled.suspect) > 0.07  # what pooling alone would have told
    assert chosen.clear == min(pooled.clear, chosen.suspect)
    with pytest.raises(ValueError, match="at least one draw"):
        choose_thresholds_every_draw([])


def test_mntd_builds_its_jumbo_shadows_and_meta_classifier_once(smoke_zoo, deepaudit_home):
    """MNTD trains its clean and jumbo shadows and fits its queries once per architecture and
    budget (the cost is in the first answer's evidence only), says its P(planted) is uncalibrated,
    and stores nothing as a pickle; a jumbo data set is the budget plus stamped copies."""
    from deepaudit.tools.mntd import jumbo_data

    subject = load_subject(smoke_zoo.twin, budget=64, seed=2)
    tool = make_tool("mntd", shadows=4, steps=10, min_shadow_auroc=0.0)
    first, again = tool.audit(subject), tool.audit(subject)
    assert first.evidence["shadow_build_cpu_s"] > 0 and again.evidence["shadow_build_cpu_s"] == 0
    assert first.p_planted == again.p_planted and first.evidence["calibrated"] is False
    assert not any(looks_like_pickle(f.read_bytes()[:4]) for f in (deepaudit_home / "cache" / "shadows").rglob("*")
                   if f.is_file() and f.stat().st_size >= 4)
    x, y = jumbo_data(subject.clean_x, subject.clean_y, subject.num_classes, subject.value_range, seed=3)
    assert len(x) > len(subject.clean_x) and len(x) == len(y)
    unsure = make_tool("mntd", shadows=4, steps=10, min_shadow_auroc=1.01).audit(subject)
    assert unsure.p_planted == 0.5 and "inconclusive" in unsure.evidence
