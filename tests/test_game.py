"""The game: every (organism, tool) cell run once, resumable after an interruption,
reproducible, and shown as a leaderboard; plus the referee's metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

import deepaudit.game.metrics as metrics
from deepaudit.game import Store, leaderboard, run_game, to_json, to_markdown
from deepaudit.game.metrics import bootstrap_ci, detect_scores, mask_iou

TOOLS = ["weight_stats", "random", "strip", "neural_cleanse"]


def cells(store_path, status: str = "done") -> list[dict]:
    store = Store(store_path)
    try:
        return list(store.cells("smoke", 0, status=status))
    finally:
        store.close()


def results(store_path) -> dict[tuple[str, str], tuple[dict, dict]]:
    """(organism, tool) -> (answer, scores): everything but the timings."""
    return {(c["organism_id"], c["tool"]): (c["answer"], c["scores"]) for c in cells(store_path)}


@pytest.fixture
def few_resamples(monkeypatch):
    """Fewer bootstrap resamples: the intervals are not under test, only their plumbing."""
    monkeypatch.setattr(metrics, "N_BOOTSTRAP", 100)


@pytest.fixture(scope="module")
def game(smoke_zoo, tmp_path_factory):
    """One full smoke game with four tools, in a fresh store."""
    store = tmp_path_factory.mktemp("game") / "results.sqlite"
    summary = run_game("smoke", tools=TOOLS, store=store, zoo_dir=smoke_zoo.dir)
    return store, summary


def test_game_runs_every_cell(game, smoke_zoo):
    """A first run scores every organism with every tool, and nothing fails."""
    store, summary = game
    n = len(smoke_zoo.manifest["organisms"])
    assert (summary.organisms, summary.ran, summary.skipped, summary.failed) == (n, n * len(TOOLS), 0, [])
    assert set(results(store)) == {(o, t) for o in smoke_zoo.manifest["organisms"] for t in TOOLS}


def test_game_cells_carry_scores(game, smoke_zoo):
    """Cells hold the truth labels and the track scores the leaderboard reads."""
    store, _ = game
    found = results(store)
    answer, scores = found[(smoke_zoo.trojan.name, "neural_cleanse")]
    assert scores["planted"] is True and 0 <= answer["p_planted"] <= 1
    assert {"target_correct", "trigger_asr", "trigger_iou"} <= scores.keys()
    assert 0.5 <= found[(smoke_zoo.trojan.name, "strip")][1]["inputs_auroc"] <= 1
    assert found[(smoke_zoo.twin.name, "weight_stats")][1]["planted"] is False


def test_rerun_resumes(game, smoke_zoo):
    """A second run finds every cell done: it runs none and skips all."""
    store, first = game
    before = results(store)
    again = run_game("smoke", tools=TOOLS, store=store, zoo_dir=smoke_zoo.dir)
    assert (again.ran, again.skipped, again.failed) == (0, first.ran, [])
    assert results(store) == before


def test_rerun_is_reproducible(game, smoke_zoo, tmp_path):
    """The same game into a fresh store gives identical answers and scores."""
    store, _ = game
    fresh = tmp_path / "fresh.sqlite"
    run_game("smoke", tools=TOOLS, store=fresh, zoo_dir=smoke_zoo.dir)
    a, b = results(store), results(fresh)
    assert a.keys() == b.keys()
    for key in sorted(a):
        assert json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True), key


def test_leaderboard_views(game, few_resamples):
    """The leaderboard has a row with tracks per tool; markdown and JSON views render it."""
    store, _ = game
    board = leaderboard(store, "smoke")
    assert [row["tool"] for row in board["rows"]] == sorted(TOOLS)
    assert board["organisms"] == 3
    by_tool = {row["tool"]: row for row in board["rows"]}
    for row in board["rows"]:
        assert row["tracks"], row["tool"]
        assert row["organisms"] == 3
    assert "detect" in by_tool["weight_stats"]["tracks"] and "target" in by_tool["neural_cleanse"]["tracks"]
    assert "inputs" in by_tool["strip"]["tracks"] and "detect" not in by_tool["strip"]["tracks"]
    assert by_tool["random"]["kind"] == "baseline" and by_tool["strip"]["kind"] == "tool"
    # strip only runs on the planted organism; its cost is averaged over that cell alone
    strip_cells = [c for c in cells(store) if c["tool"] == "strip"]
    worked = [c for c in strip_cells if "skipped" not in c["answer"]]
    assert len(worked) == 1 and len(strip_cells) == 3
    assert by_tool["strip"]["forward_passes"] == worked[0]["forward_passes"] > 0
    markdown = to_markdown(board)
    for tool in TOOLS:
        assert f"| {tool} |" in markdown
    assert json.loads(to_json(board)) == json.loads(json.dumps(board))


def test_leaderboard_does_not_mix_budgets(smoke_zoo, tmp_path, few_resamples):
    """Two runs with different clean budgets in one store are never counted together."""
    store = tmp_path / "results.sqlite"
    for budget in (256, 64):
        run_game("smoke", tools=["weight_stats"], store=store, zoo_dir=smoke_zoo.dir, budget=budget)
    with pytest.raises(ValueError, match="budget"):
        leaderboard(store, "smoke")
    row, = leaderboard(store, "smoke", budget=64)["rows"]
    assert row["organisms"] == len(smoke_zoo.manifest["organisms"]) and row["budget"] == 64


def test_leaderboard_of_empty_suite_raises(game):
    """Asking for a suite the store does not hold is a ValueError naming it."""
    store, _ = game
    with pytest.raises(ValueError, match="nothing_here"):
        leaderboard(store, "nothing_here")


def test_interrupted_run_keeps_finished_cells(smoke_zoo, tmp_path):
    """Ctrl-C after two cells: they are stored, nothing else is, and a rerun does the rest."""
    store = tmp_path / "results.sqlite"
    tools = ["weight_stats", "random"]
    finished = []

    def stop_after_two(key, status):
        finished.append((key.organism_id, key.tool, status))
        if len(finished) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_game("smoke", tools=tools, store=store, zoo_dir=smoke_zoo.dir, on_cell=stop_after_two)
    assert [s for *_, s in finished] == ["done", "done"]
    assert set(results(store)) == {(o, t) for o, t, _ in finished}

    total = len(smoke_zoo.manifest["organisms"]) * len(tools)
    rest = run_game("smoke", tools=tools, store=store, zoo_dir=smoke_zoo.dir)
    assert (rest.ran, rest.skipped, rest.failed) == (total - 2, 2, [])
    assert len(results(store)) == total


def test_detect_scores_perfect_separation(few_resamples):
    """Perfectly separated probabilities give AUROC 1, AUPR 1 and FPR@95 of 0."""
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    scores = detect_scores(labels, probs)
    assert scores["auroc"]["value"] == 1.0 and scores["aupr"]["value"] == 1.0
    assert scores["fpr95"]["value"] == 0.0
    assert detect_scores(labels, 1 - probs)["auroc"]["value"] == 0.0
    assert detect_scores(np.ones(4), np.full(4, 0.5)) == {}


def test_mask_iou():
    """Identical masks have IoU 1; disjoint masks have IoU 0."""
    mask = np.zeros((8, 8))
    mask[1:3, 1:3] = 1
    other = np.zeros((8, 8))
    other[5:7, 5:7] = 1
    assert mask_iou(mask, mask) == 1.0
    assert mask_iou(other, mask) == 0.0
    assert mask_iou(0.3 * mask, mask) == 1.0  # a ranking measure: scale does not matter


def test_bootstrap_ci_deterministic():
    """bootstrap_ci gives the same interval for the same seed, and brackets the statistic."""
    values = np.random.default_rng(0).normal(size=40)
    stat = lambda idx: float(values[idx].mean())  # noqa: E731
    a, b = bootstrap_ci(stat, len(values), seed=3), bootstrap_ci(stat, len(values), seed=3)
    assert a == b
    assert a != bootstrap_ci(stat, len(values), seed=4)
    assert a[0] < values.mean() < a[1]
