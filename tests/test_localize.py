"""The localize track: localizers rank every hidden unit from the organism's recovered trigger
(a shared finding); the referee zeroes the top-k and k random units and compares the drops in
the true trigger's success; and the leaderboard shows the remove and localize columns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepaudit.metrics as metrics
from deepaudit.game.answer import Answer
from deepaudit.game.leaderboard import leaderboard, to_markdown
from deepaudit.game.referee import ToolRun, ask_and_score
from deepaudit.game.runner import run_game
from deepaudit.game.tracks import TRACKS
from deepaudit.game.tracks.localize import check_units
from deepaudit.internals import intervene, run_with_cache
from deepaudit.internals.ablation import all_units, zero_units
from deepaudit.subject import load_model, load_subject
from deepaudit.tools import make_tool, tool_spec
from deepaudit.zoo import family

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
    assert tool_spec(name).roles == ("localize",) and "trigger" in tool_spec(name).needs
    organism = family("vision").open(smoke_zoo.trojan, 0, 64, {})
    subject = organism.subject()
    units = make_tool(name).localize(subject)
    pool = all_units(subject.model, subject.clean_x)
    assert sorted(units) == sorted(pool) and len(units) == len(pool)
    assert check_units(units, pool) == units
    assert make_tool(name).localize(organism.subject()) == units
    assert subject.forward_passes > 0 and organism.findings.cost["trigger"].forward_passes > 0


def test_check_units_refuses_unknown_and_repeated_units(smoke_zoo):
    model = load_model(smoke_zoo.trojan)
    pool = all_units(model, load_subject(smoke_zoo.trojan, budget=4).clean_x)
    with pytest.raises(ValueError, match="outside the model.s unit pool"):
        check_units([("act1", 10_000)], pool)
    with pytest.raises(ValueError, match="more than once"):
        check_units([("act1", 0), ("act1", 0)], pool)


def _oracle(kit) -> list:
    """Units ranked by how much zeroing each one alone lowers the TRUE trigger's success."""
    model = kit.original
    x = kit.true_trigger.apply(kit._eligible)
    drops = {}
    with torch.no_grad():
        for unit in kit.units(model):
            with intervene(model, zero_units([unit])):
                drops[unit] = -float(torch.log_softmax(model(x), 1)[:, kit.true_target].mean())
    return sorted(drops, key=lambda u: (-drops[u], u))


def test_localize_score_separates_good_from_bad_rankings(smoke_zoo):
    """A ranking built with the true trigger scores a higher area than random units, and the
    same ranking reversed scores lower than it: the metric points the right way."""
    kit = family("vision").open(smoke_zoo.trojan, 0, 64, {}).kit
    oracle = _oracle(kit)
    track = TRACKS.get("localize")
    good = track.score(Answer(oracle, {}), kit, 0)
    bad = track.score(Answer(oracle[::-1], {}), kit, 0)
    assert good["localize_auc"] > good["localize_auc_random"] + 0.1
    assert good["localize_auc"] > bad["localize_auc"] + 0.1
    assert len(good["localize_drop"]) == len(good["localize_k"]) == len(good["localize_drop_random"])
    assert good["localize_auc_random"] == bad["localize_auc_random"]  # one random baseline per organism
    assert len(good["localize_clean_damage"]) == len(good["localize_k"])
    assert good["localize_clean_damage"][0] < 0.2  # one unit zeroed: the task survives


def test_ablation_search_beats_random_units_on_the_smoke_trojan(smoke_zoo):
    """With the organism's recovered trigger, the ablation search's top units cut the true
    trigger's success more than random units do; on the clean twin no track applies."""
    vision = family("vision")
    cell = ask_and_score(vision.open(smoke_zoo.trojan, 0, 128, {}), ToolRun.of("ablation_search"), 0, "vision")
    scores = cell.scores["localize"]
    assert scores["localize_auc"] > scores["localize_auc_random"]
    assert len(cell.answer["units"]) == 32 and cell.forward_passes > 0 and "trigger" in cell.shared
    twin = ask_and_score(vision.open(smoke_zoo.twin, 0, 64, {}), ToolRun.of("ablation_search"), 0, "vision")
    assert twin.status == "skipped" and not twin.scores


def test_leaderboard_shows_edit_columns(smoke_zoo, tmp_path, monkeypatch):
    """A smoke game with a remover, a localizer and a detector fills the new columns and keeps
    the detection ones."""
    monkeypatch.setattr(metrics, "N_BOOTSTRAP", 100)  # the intervals are not under test here
    store = tmp_path / "results.sqlite"
    tools = ["finetune", "attr_patch", "weight_stats"]
    summary = run_game("smoke", tools=tools, store=store, zoo_dir=smoke_zoo.dir, budget=64)
    assert summary.failed == [] and summary.ran + summary.not_applicable == 3 * len(tools)
    board = leaderboard(store, "smoke")
    rows = {row["tool"]: row["tracks"] for row in board["rows"]}
    assert {"der", "twin_pass", "twin_damage"} <= set(rows["finetune"]["remove"])
    assert {"auc", "auc_random", "damage_top"} <= set(rows["attr_patch"]["localize"])
    assert "detect" in rows["weight_stats"] and "remove" not in rows["weight_stats"]
    assert rows["finetune"]["remove"]["twin_pass"]["n"] == 2  # the twin and the decoy
    text = to_markdown(board)
    assert "remove DER" in text and "localize AUC" in text and "detect AUROC" in text
    assert np.isfinite(rows["attr_patch"]["localize"]["auc"]["value"])
