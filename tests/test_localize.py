"""The localize track: localizers rank every hidden unit; the referee zeroes the top-k and k
random units and compares the drops in the true trigger's success; and the leaderboard shows
the remove and localize columns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepaudit.game.metrics as metrics
from deepaudit.game import leaderboard, run_game, to_markdown
from deepaudit.game.referee import run_cell
from deepaudit.game.removal import _triggered, check_units, score_localization
from deepaudit.internals import intervene, run_with_cache
from deepaudit.internals.ablation import all_units, zero_units
from deepaudit.subject import load_model, load_subject
from deepaudit.tools import make_tool, roles
from deepaudit.zoo import read_truth

LOCALIZERS = ["act_patch", "attr_patch", "captum_conductance", "ablation_search"]


def test_zero_units_zeroes_only_the_named_channels(smoke_zoo):
    """The ablation hook zeroes exactly the listed units of the listed layer."""
    model = load_model(smoke_zoo.trojan)
    x = load_subject(smoke_zoo.trojan, budget=16).clean_x
    _, plain = run_with_cache(model, x, ["act1"])
    with intervene(model, zero_units([("act1", 2), ("act1", 5)])):
        _, ablated = run_with_cache(model, x, ["act1"])
    assert ablated["act1"][:, [2, 5]].abs().max() == 0
    keep = [i for i in range(plain["act1"].shape[1]) if i not in (2, 5)]
    assert torch.equal(ablated["act1"][:, keep], plain["act1"][:, keep])
    assert plain["act1"][:, [2, 5]].abs().max() > 0


@pytest.mark.parametrize("name", LOCALIZERS)
def test_localizer_ranks_every_unit_once(smoke_zoo, name):
    """Each localizer returns every ReLU unit of the model exactly once, and is reproducible."""
    assert roles(name) == ["localizer"]
    subject = load_subject(smoke_zoo.trojan, budget=64)
    units = make_tool(name, nc_steps=30).localize(subject)
    pool = all_units(subject.model, subject.clean_x)
    assert sorted(units) == sorted(pool) and len(units) == len(pool)
    assert check_units(units, pool) == units
    assert make_tool(name, nc_steps=30).localize(load_subject(smoke_zoo.trojan, budget=64)) == units
    assert subject.meter.forward_passes > 0


def test_check_units_refuses_unknown_and_repeated_units(smoke_zoo):
    model = load_model(smoke_zoo.trojan)
    pool = all_units(model, load_subject(smoke_zoo.trojan, budget=4).clean_x)
    with pytest.raises(ValueError, match="outside the model.s unit pool"):
        check_units([("act1", 10_000)], pool)
    with pytest.raises(ValueError, match="more than once"):
        check_units([("act1", 0), ("act1", 0)], pool)


def _oracle(model, truth) -> list:
    """Units ranked by how much zeroing each one alone lowers the TRUE trigger's success."""
    x, target = _triggered(truth)
    drops = {}
    with torch.no_grad():
        for unit in all_units(model, x):
            with intervene(model, zero_units([unit])):
                drops[unit] = -float(torch.log_softmax(model(x), 1)[:, target].mean())
    return sorted(drops, key=lambda u: (-drops[u], u))


def test_localize_score_separates_good_from_bad_rankings(smoke_zoo):
    """A ranking built with the true trigger scores a higher area than random units, and the
    same ranking reversed scores lower than it: the metric points the right way."""
    model, truth = load_model(smoke_zoo.trojan), read_truth(smoke_zoo.trojan)
    oracle = _oracle(model, truth)
    good = score_localization(oracle, model, truth, seed=0)
    bad = score_localization(oracle[::-1], model, truth, seed=0)
    assert good["localize_auc"] > good["localize_auc_random"] + 0.1
    assert good["localize_auc"] > bad["localize_auc"] + 0.1
    assert len(good["localize_drop"]) == len(good["localize_k"]) == len(good["localize_drop_random"])
    assert good["localize_auc_random"] == bad["localize_auc_random"]  # same seed, same random draws


def test_ablation_search_beats_random_units_on_the_smoke_trojan(smoke_zoo):
    """With a trigger it recovers itself, the ablation search's top units cut the true
    trigger's success more than random units do."""
    cell = run_cell(smoke_zoo.trojan, "ablation_search", budget=128)
    scores = cell["scores"]
    assert scores["localize_auc"] > scores["localize_auc_random"]
    assert len(cell["answer"]["units"]) == 32 and cell["forward_passes"] > 0
    twin = run_cell(smoke_zoo.twin, "ablation_search", budget=64)
    assert "localize_auc" not in twin["scores"] and twin["answer"]["units"]


def test_leaderboard_shows_edit_columns(smoke_zoo, tmp_path, monkeypatch):
    """A smoke game with a remover, a localizer and a detector fills the new columns and keeps
    the detection ones."""
    monkeypatch.setattr(metrics, "N_BOOTSTRAP", 100)  # the intervals are not under test here
    store = tmp_path / "results.sqlite"
    tools = ["finetune", "attr_patch", "weight_stats"]
    summary = run_game("smoke", tools=tools, store=store, zoo_dir=smoke_zoo.dir, budget=64)
    assert summary.failed == [] and summary.ran == 3 * len(tools)
    board = leaderboard(store, "smoke")
    rows = {row["tool"]: row["tracks"] for row in board["rows"]}
    assert {"remove_der", "remove_twin_pass", "remove_twin_damage"} <= set(rows["finetune"])
    assert {"localize_auc", "localize_auc_random"} <= set(rows["attr_patch"])
    assert "detect" in rows["weight_stats"] and "remove_der" not in rows["weight_stats"]
    assert rows["finetune"]["remove_twin_pass"]["n"] == 2  # the twin and the decoy
    text = to_markdown(board)
    assert "remove DER" in text and "localize AUC (random)" in text and "detect AUROC" in text
    assert np.isfinite(rows["attr_patch"]["localize_auc"]["value"])
