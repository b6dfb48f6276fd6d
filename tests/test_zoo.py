"""The attacker's side: reproducible organisms, implants that work, twins that look alike,
suites that expand as documented, and specs that fail their checks dropped once and for all."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
from safetensors.torch import load_file

import deepaudit.zoo.vision.build as zoo_build
from deepaudit.subject import load_model
from deepaudit.triggers import Trigger
from deepaudit.zoo import available_suites, family, load_suite, read_truth
from deepaudit.zoo.folder import truth_path
from deepaudit.zoo.suite import BuildError, SuiteError, build_suite
from deepaudit.zoo.vision.spec import OrganismSpec

SPEC = OrganismSpec("digits", "mlp", "patch", seed=5, epochs=5)


def build_organism(spec: OrganismSpec, out):
    return zoo_build.build_organism(spec, out, out / "results.sqlite")


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_spec_gives_identical_weights(tmp_path):
    """Building one spec into two folders gives byte-identical weights, card and truth."""
    a, b = build_organism(SPEC, tmp_path / "a"), build_organism(SPEC, tmp_path / "b")
    assert a.status == b.status == "built", (a, b)
    assert a.organism_id == b.organism_id == SPEC.digest()
    for name in ("weights.safetensors", "card.json"):
        assert sha256(a.path / name) == sha256(b.path / name), name
    assert sha256(truth_path(a.path)) == sha256(truth_path(b.path))
    twin = SPEC.twin().digest()
    assert sha256(tmp_path / "a" / twin / "weights.safetensors") == sha256(tmp_path / "b" / twin / "weights.safetensors")


def test_built_spec_is_cached(tmp_path):
    """A second build of the same spec reuses the folder instead of retraining."""
    first = build_organism(SPEC.twin(), tmp_path)
    assert first.status == "built"
    again = build_organism(SPEC.twin(), tmp_path)
    assert (again.status, again.path) == ("cached", first.path)


def test_different_seed_gives_different_weights(tmp_path):
    """The seed matters: another seed yields another organism id and other weights."""
    a = build_organism(SPEC.twin(), tmp_path)
    b = build_organism(replace(SPEC.twin(), seed=6), tmp_path)
    assert a.organism_id != b.organism_id
    assert sha256(a.path / "weights.safetensors") != sha256(b.path / "weights.safetensors")


def test_smoke_trojan_works_and_keeps_accuracy(smoke_zoo):
    """The smoke trojan's backdoor fires (ASR >= 0.9) and costs at most 2 points of accuracy."""
    truth = read_truth(smoke_zoo.trojan)
    assert truth["planted"] is True and truth["implant"] == "patch"
    assert truth["attack_success_rate"] >= 0.9
    assert abs(truth["clean_accuracy"] - truth["twin_clean_accuracy"]) <= 0.02
    assert truth["clean_accuracy"] > 0.9
    assert truth["twin_id"] == smoke_zoo.twin.name


def test_truth_matches_saved_weights(smoke_zoo):
    """The stored ASR is reproduced by replaying the stored trigger on the saved weights."""
    truth = read_truth(smoke_zoo.trojan)
    kit = family("vision").open(smoke_zoo.trojan, 0, 16, {}).kit
    asr = kit.behaviour_rate(load_model(smoke_zoo.trojan), Trigger.from_json(truth["trigger"]))
    assert asr == pytest.approx(truth["attack_success_rate"], abs=1e-3)
    assert kit.behaviour_rate(load_model(smoke_zoo.twin)) < 0.5


def test_twin_truth_says_clean(smoke_zoo):
    """The clean twin's truth says nothing was planted, and it shares the trojan's data seed."""
    twin, trojan = read_truth(smoke_zoo.twin), read_truth(smoke_zoo.trojan)
    assert twin["planted"] is False and twin["implant"] == "none"
    assert twin["spec"] == {**trojan["spec"], "implant": "none"}
    assert read_truth(smoke_zoo.decoy)["planted"] is False


def test_trojan_and_twin_cards_are_identical(smoke_zoo):
    """Public cards of trojan and twin are identical (no id either), and so are their weight keys."""
    cards = [json.loads((f / "card.json").read_text()) for f in (smoke_zoo.trojan, smoke_zoo.twin)]
    assert cards[0] == cards[1] and "organism_id" not in cards[0]
    weights = [load_file(str(f / "weights.safetensors")) for f in (smoke_zoo.trojan, smoke_zoo.twin)]
    assert {k: v.shape for k, v in weights[0].items()} == {k: v.shape for k, v in weights[1].items()}


@pytest.mark.parametrize("name, minimum", [("quick", 40), ("standard", 300)])
def test_suites_expand_with_twins(name, minimum):
    """Built-in suites have the documented size, and every planted spec brings its twin."""
    specs = load_suite(name).specs()
    assert len(specs) >= minimum
    assert len(set(specs)) == len(specs)
    planted = [s for s in specs if s.planted]
    assert planted
    assert [s for s in planted if s.twin() not in specs] == []


def test_suite_seed_derives_organism_seeds():
    """The same suite seed gives the same specs; another seed gives other organism seeds."""
    suite = load_suite("quick")
    assert suite.specs(0) == suite.specs(0)
    seeds0 = {s.seed for s in suite.specs(0)}
    seeds1 = {s.seed for s in suite.specs(1)}
    assert seeds0.isdisjoint(seeds1)


def test_unknown_suite_raises():
    """An unknown suite name is an error naming it."""
    with pytest.raises(SuiteError, match="no_such_suite"):
        load_suite("no_such_suite")


def test_every_family_lists_its_suites_and_a_suite_file_names_its_family(tmp_path):
    """Each family's suites are found in its folder; a suite file elsewhere must name its family."""
    assert {"smoke", "quick", "standard", "lm", "lm-tiny", "truth", "lm-edit", "grok-tiny", "grok-full"} <= set(
        available_suites())
    assert {load_suite(n).family.name for n in ("quick", "lm-tiny", "grok-tiny")} == {"vision", "lm", "training"}
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[[group]]\ndatasets = ["digits"]\narchs = ["mlp"]\n')
    with pytest.raises(SuiteError, match="must name its family"):
        load_suite(str(path))
    path.write_text('family = "vision"\n' + path.read_text())
    assert load_suite(str(path)).specs()[0].arch == "mlp"


def test_failed_spec_is_dropped_once(tmp_path, monkeypatch):
    """A spec that cannot meet the ASR bar is dropped with a reason, and never retrained."""
    monkeypatch.setattr(zoo_build, "MIN_ASR", 1.01)
    spec = OrganismSpec("digits", "mlp", "patch", seed=11, epochs=2)
    first = build_organism(spec, tmp_path)
    assert first.status == "dropped" and first.path is None
    assert first.reason and "ASR" in first.reason
    assert not (tmp_path / spec.digest()).exists()

    def no_training(*args, **kwargs):
        raise AssertionError("a dropped spec was trained again")

    monkeypatch.setattr(zoo_build, "_build", no_training)
    second = build_organism(spec, tmp_path)
    assert (second.status, second.reason) == ("dropped", first.reason)


def test_a_progress_total_that_was_a_plan_grows_with_the_spares():
    from deepaudit.cli.common import advance, progress

    with progress() as bar:
        task = bar.add_task("building", total=2)
        for _ in range(3):
            advance(bar, task)
        assert bar.tasks[task].completed == 3 == bar.tasks[task].total


class _BrokenWorker:
    """An executor whose first job fails the way a worker's library can (not a deepaudit error)."""

    def run(self, fn, jobs):
        yield 0, None, RuntimeError("Error while serializing: I/O error: No such file or directory")


def test_a_workers_unforeseen_failure_is_a_named_build_error_not_a_traceback(tmp_path):
    first = load_suite("grok-tiny").specs(0)[0].digest()
    with pytest.raises(BuildError, match=f"building organism {first} of suite 'grok-tiny'.*RuntimeError.*again to resume"):
        build_suite("grok-tiny", out=tmp_path, store=tmp_path / "results.sqlite", executor=_BrokenWorker())
