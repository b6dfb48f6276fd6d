"""The game: every (organism, tool) run once, resumable after an interruption, reproducible,
keyed by the tool's parameters, and shown as a leaderboard of one JSON shape; plus the
referee's metrics and the store's schema migration."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import deepaudit.metrics as metrics
from deepaudit.cli import app
from deepaudit.errors import DataError
from deepaudit.game.leaderboard import leaderboard, to_json, to_markdown
from deepaudit.game.runner import run_game, tool_runs
from deepaudit.game.store import Store, StoreError
from deepaudit.metrics import bootstrap_ci, detect_scores, mask_iou
from deepaudit.zoo import Kit

TOOLS = ["weight_stats", "random", "strip", "neural_cleanse"]


def cells(store_path, status: str = "done") -> list[dict]:
    store = Store(store_path)
    try:
        return list(store.cells("smoke", 0, status=status))
    finally:
        store.close()


def results(store_path) -> dict[tuple[str, str, str], tuple[dict, dict]]:
    """(organism, tool, track) -> (answer, scores): everything but the timings."""
    return {(c["organism_id"], c["tool"], c["track"]): (c["answer"], c["scores"]) for c in cells(store_path)}


def pairs(store_path, status: tuple[str, ...] = ("done", "skipped")) -> set[tuple[str, str]]:
    """The (organism, tool) pairs the store holds as scored or not applicable."""
    return {(c["organism_id"], c["tool"]) for st in status for c in cells(store_path, st)}


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
    assert (summary.organisms, summary.ran + summary.not_applicable, summary.already_done, summary.failed) == (
        n, n * len(TOOLS), 0, [])
    assert summary.not_applicable == 2  # strip's inputs track scores only the planted organism
    assert pairs(store) == {(o, t) for o in smoke_zoo.manifest["organisms"] for t in TOOLS}
    # strip's inputs track scores planted organisms only: on the others it is recorded as not applicable
    assert {o for o, t in pairs(store, ("skipped",)) if t == "strip"} == {smoke_zoo.twin.name, smoke_zoo.decoy.name}


def test_game_cells_carry_scores(game, smoke_zoo):
    """Cells hold the truth labels and the track scores the leaderboard reads."""
    store, _ = game
    found = results(store)
    answer, scores = found[(smoke_zoo.trojan.name, "neural_cleanse", "detect")]
    assert 0 <= answer["p_planted"] <= 1 and scores == {"p_planted": answer["p_planted"]}
    assert set(found[(smoke_zoo.trojan.name, "neural_cleanse", "trigger")][1]) == {"trigger_asr", "trigger_iou"}
    assert "target_correct" in found[(smoke_zoo.trojan.name, "neural_cleanse", "target")][1]
    assert 0.5 <= found[(smoke_zoo.trojan.name, "strip", "inputs")][1]["inputs_auroc"] <= 1
    labels = {c["organism_id"]: c["labels"] for c in cells(store)}
    assert labels[smoke_zoo.trojan.name]["planted"] is True and labels[smoke_zoo.twin.name]["planted"] is False


def test_rerun_resumes(game, smoke_zoo):
    """A second run finds every cell done: it runs none and skips all."""
    store, first = game
    before = results(store)
    again = run_game("smoke", tools=TOOLS, store=store, zoo_dir=smoke_zoo.dir)
    assert (again.ran, again.already_done, again.failed) == (0, first.ran + first.not_applicable, [])
    assert results(store) == before


def test_changed_parameters_are_new_cells_never_mixed(smoke_zoo, tmp_path, few_resamples):
    """A tool run with other parameters gets cells of its own (a new digest): the run does not
    reuse the old ones, and the leaderboard shows the two apart."""
    store = tmp_path / "results.sqlite"
    run_game("smoke", tools=["neural_cleanse"], params={"neural_cleanse": {"steps": 30}}, store=store,
             zoo_dir=smoke_zoo.dir)
    summary = run_game("smoke", tools=["neural_cleanse"], params={"neural_cleanse": {"steps": 40}}, store=store,
                       zoo_dir=smoke_zoo.dir)
    assert summary.ran == len(smoke_zoo.manifest["organisms"]) and summary.already_done == 0
    names = [row["tool"] for row in leaderboard(store, "smoke")["rows"]]
    assert len([n for n in names if n.startswith("neural_cleanse [")]) == 2


def test_only_runs_the_organisms_with_those_labels(smoke_zoo, tmp_path):
    """``only`` keeps the organisms whose sealed labels match (the trojan alone for planted=true,
    the twin and decoy for planted=false); a label the family cannot choose by, or a value no
    organism has, is refused by name before any tool runs (exit 2 on the command line)."""
    store = tmp_path / "results.sqlite"
    summary = run_game("smoke", tools=["random"], store=store, zoo_dir=smoke_zoo.dir, only=["planted=true"])
    assert summary.organisms == 1 and pairs(store) == {(smoke_zoo.trojan.name, "random")}
    summary = run_game("smoke", tools=["random"], store=store, zoo_dir=smoke_zoo.dir, only=["planted=False"])
    assert summary.organisms == 2 and {o for o, _ in pairs(store)} == set(smoke_zoo.manifest["organisms"])
    with pytest.raises(DataError, match="choose from .*'implant'"):
        run_game("smoke", tools=["random"], store=store, zoo_dir=smoke_zoo.dir, only=["colour=red"])
    with pytest.raises(DataError, match="no organism .* its values"):
        run_game("smoke", tools=["random"], store=store, zoo_dir=smoke_zoo.dir, only=["implant=none-such"])
    result = CliRunner().invoke(app, ["game", "run", "--suite", "smoke", "--zoo", str(smoke_zoo.dir), "--store",
                                      str(store), "--tools", "random", "--only", "planted"])
    assert result.exit_code == 2 and "label=value" in result.output, result.output


def test_a_parameter_value_the_tool_refuses_stops_the_run_before_it_starts(smoke_zoo, tmp_path):
    """``--param nc_contrast.keep=1.5`` is refused by the tool's constructor once, up front (exit
    2 naming the parameter), not as an error in every cell; nothing is written to the store."""
    store = tmp_path / "results.sqlite"
    with pytest.raises(ValueError, match="keep"):
        tool_runs("vision", ["nc_contrast"], {"nc_contrast": {"keep": 1.5}})
    result = CliRunner().invoke(app, ["game", "run", "--suite", "smoke", "--zoo", str(smoke_zoo.dir), "--store",
                                      str(store), "--tools", "nc_contrast", "--param", "nc_contrast.keep=1.5"])
    assert result.exit_code == 2 and "keep=1.5" in result.output and "Traceback" not in result.output, result.output
    assert not store.exists()
    assert [run.overrides for run in tool_runs("vision", ["nc_contrast"], {"nc_contrast": {"keep": 0.4}})] == [{"keep": 0.4}]


def test_rerun_is_reproducible(game, smoke_zoo, tmp_path):
    """The same game into a fresh store gives identical answers and scores."""
    store, _ = game
    fresh = tmp_path / "fresh.sqlite"
    run_game("smoke", tools=TOOLS, store=fresh, zoo_dir=smoke_zoo.dir)
    a, b = results(store), results(fresh)
    assert a.keys() == b.keys()
    for key in sorted(a):
        assert json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True), key


def test_leaderboard_views(smoke_zoo, tmp_path, few_resamples):
    """The leaderboard has a row with tracks per tool, every metric in one JSON shape, and the
    cost of the organisms where the tool worked; markdown and JSON views render it."""
    store = tmp_path / "results.sqlite"
    run_game("smoke", tools=TOOLS, store=store, zoo_dir=smoke_zoo.dir)
    board = leaderboard(store, "smoke")
    assert [row["tool"] for row in board["rows"]] == sorted(TOOLS)
    assert board["organisms"] == 3 and board["family"] == "vision" and board["schema"] == 2
    by_tool = {row["tool"]: row for row in board["rows"]}
    assert "detect" in by_tool["weight_stats"]["tracks"] and "target" in by_tool["neural_cleanse"]["tracks"]
    assert "inputs" in by_tool["strip"]["tracks"] and "detect" not in by_tool["strip"]["tracks"]
    assert by_tool["random"]["kind"] == "baseline" and by_tool["strip"]["kind"] == "tool"
    shapes = {tuple(sorted(metric)) for row in board["rows"] for track in row["tracks"].values()
              for metric in track.values()} | {tuple(sorted(m)) for row in board["rows"] for m in row["cost"].values()}
    assert shapes == {("ci_high", "ci_low", "n", "value")}
    # strip worked on the planted organism only; its cost is that one organism's
    worked = [c for c in cells(store) if c["tool"] == "strip"]
    assert by_tool["strip"]["organisms"] == 1 and by_tool["strip"]["cost"]["forward_passes"]["value"] == \
        worked[0]["forward_passes"] > 0
    # Neural Cleanse's answer is the organism's shared finding: its cost is shown as shared
    assert by_tool["neural_cleanse"]["cost"]["shared_wall_s"]["value"] > 0
    markdown = to_markdown(board)
    for tool in TOOLS:
        assert f"| {tool} |" in markdown
    assert json.loads(to_json(board)) == json.loads(json.dumps(board))


def test_leaderboard_does_not_mix_budgets(smoke_zoo, tmp_path, few_resamples):
    """Two runs with different clean budgets in one store are never counted together."""
    store = tmp_path / "results.sqlite"
    for budget in (256, 64):
        run_game("smoke", tools=["weight_stats"], store=store, zoo_dir=smoke_zoo.dir, budget=budget)
    with pytest.raises(StoreError, match="budget"):
        leaderboard(store, "smoke")
    board = leaderboard(store, "smoke", budget=64)
    row, = board["rows"]
    assert row["organisms"] == len(smoke_zoo.manifest["organisms"]) and board["budget"] == 64


def test_leaderboard_of_empty_suite_raises(game):
    """Asking for a suite the store does not hold is an error naming it."""
    store, _ = game
    with pytest.raises(StoreError, match="nothing_here"):
        leaderboard(store, "nothing_here")


def test_interrupted_run_keeps_finished_cells(smoke_zoo, tmp_path):
    """Ctrl-C after the first organism: its cells are stored, nothing else is, and a rerun does the rest."""
    store = tmp_path / "results.sqlite"
    tools = ["weight_stats", "random"]
    finished = []

    def stop_after_one_organism(organism, tool, status):
        finished.append((organism, tool, status))
        if len(finished) == len(tools):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_game("smoke", tools=tools, store=store, zoo_dir=smoke_zoo.dir, on_cell=stop_after_one_organism)
    assert [s for *_, s in finished] == ["done", "done"]
    assert pairs(store) == {(o, t) for o, t, _ in finished}

    total = len(smoke_zoo.manifest["organisms"]) * len(tools)
    rest = run_game("smoke", tools=tools, store=store, zoo_dir=smoke_zoo.dir)
    assert (rest.ran, rest.already_done, rest.failed) == (total - 2, 2, [])
    assert len(pairs(store)) == total


def test_a_schema_1_store_is_migrated_and_never_mixed(smoke_zoo, tmp_path):
    """A store written by deepaudit before schema 2 keeps its cells as they were (readable, not
    shown with new results); new runs write schema-2 cells beside them."""
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "INSERT INTO meta VALUES ('schema_version', '1');"
                     "CREATE TABLE cells (suite TEXT, seed INTEGER, organism_id TEXT, tool TEXT, budget INTEGER, "
                     "status TEXT, answer TEXT, scores TEXT, error TEXT, wall_s REAL, forward_passes INTEGER, "
                     "finished_at REAL);"
                     "INSERT INTO cells VALUES ('smoke', 0, 'x', 'weight_stats', 256, 'done', '{}', "
                     "'{\"planted\": true}', NULL, 0.1, 0, 0);")
    db.commit()
    db.close()
    store = Store(path)
    assert store.legacy_cells("smoke", 0)[0]["scores"] == {"planted": True}
    assert list(store.cells("smoke", 0)) == []
    store.close()
    run_game("smoke", tools=["weight_stats"], store=path, zoo_dir=smoke_zoo.dir)
    assert {c["organism_id"] for c in cells(path)} == set(smoke_zoo.manifest["organisms"])


def test_a_schema_2_store_gains_the_cpu_column_and_keeps_its_cells(smoke_zoo, tmp_path):
    """Schema 3 added each cell's own CPU seconds: a schema-2 store is altered in place, its
    cells read as before (CPU unknown), and new cells record their CPU time."""
    import sqlite3

    path = tmp_path / "v2.sqlite"
    run_game("smoke", tools=["weight_stats"], store=path, zoo_dir=smoke_zoo.dir)
    db = sqlite3.connect(path)
    db.executescript("ALTER TABLE cells DROP COLUMN cpu_s; UPDATE meta SET value='2' WHERE key='schema_version';")
    db.commit()
    db.close()
    old = cells(path)
    assert old and all(c["cpu_s"] is None for c in old)
    run_game("smoke", tools=["weight_stats", "mahalanobis"], store=path, zoo_dir=smoke_zoo.dir)
    new = [c for c in cells(path) if c["tool"] == "mahalanobis"]
    assert new and all(c["cpu_s"] is not None and c["cpu_s"] >= 0 for c in new)
    assert len([c for c in cells(path) if c["tool"] == "weight_stats"]) == len(old)


def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path):
    """--store pointing at another program's database: refused before anything is written."""
    import sqlite3

    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="another program"):
        Store(path)
    assert path.read_bytes() == before


def test_kit_measures_once_per_key():
    """What several tools' cells share (held-out inputs, random-ablation baselines) is measured
    once per organism and key, and a new key (another seed) is measured anew."""
    kit, calls = Kit(truth={}, labels={"planted": True}, tracks=frozenset()), []
    measure = lambda: calls.append(1) or len(calls)  # noqa: E731
    assert [kit.once("inputs:0", measure), kit.once("inputs:0", measure), kit.once("inputs:1", measure)] == [1, 1, 2]
    assert len(calls) == 2


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


def test_verdict_track_reads_the_detect_answers(smoke_zoo, tmp_path, few_resamples, monkeypatch):
    """Every tool scored on detect is scored on the verdict track from the same stored answers,
    with no cells of its own: label shares per truth and the calibration error."""
    from deepaudit import verdicts
    from deepaudit.game.tracks.verdict import verdict_label
    from deepaudit.metrics import calibration_error

    store = tmp_path / "results.sqlite"
    run_game("smoke", tools=["weight_stats", "random"], store=store, zoo_dir=smoke_zoo.dir)
    assert "verdict" not in {c["track"] for c in cells(store)}
    board = leaderboard(store, "smoke")
    for row in board["rows"]:
        verdict = row["tracks"]["verdict"]
        assert 0.0 <= verdict["ece"]["value"] <= 1.0
        assert verdict["clean_suspected"]["value"] + verdict["clean_cleared"]["value"] <= 1.0
    cell = {"tool": "weight_stats", "answer": {"p_planted": 0.9, "evidence": {"inconclusive": "no reference"}},
            "scores": {"p_planted": 0.9}, "labels": {"family": "vision", "planted": True}}
    assert verdict_label(cell) == "inconclusive"
    assert verdict_label({**cell, "answer": {"p_planted": 0.9}}) == "backdoor suspected"
    # the family's verdict tool is read by its own thresholds, every other detector at 0.5
    monkeypatch.setitem(verdicts.THRESHOLDS, "vision", verdicts.Thresholds(0.95, 0.2, "a test", tool="combine_fisher"))
    assert verdict_label({**cell, "answer": {}, "tool": "combine_fisher"}) == "inconclusive"
    assert verdict_label({**cell, "answer": {}}) == "backdoor suspected"
    assert calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0
    assert calibration_error(np.array([0, 0]), np.array([0.9, 0.9])) == pytest.approx(0.9)
