"""The training monitor: it records the measures it promises into the results store, reads
the model without changing what training produces, and the zoo's builds are recorded."""

from __future__ import annotations

import sqlite3

import pytest
import torch
from typer.testing import CliRunner

from deepaudit.cli import app
from deepaudit.game.store import Store
from deepaudit.models import build_model
from deepaudit.monitor import Concept, Monitor, MonitorError, MonitorStore
from deepaudit.monitor.measures import effective_rank, probe_accuracy
from deepaudit.paths import default_store_path
from deepaudit.zoo.vision.train import Recipe, train


def _data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].sum((1, 2)) > 0).long() + 2 * (x[:, 0, 4:].sum((1, 2)) > 0).long()
    return x, y


def _train(monitor: Monitor | None) -> torch.nn.Module:
    x, y = _data()
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 4, hidden=32)
    return train(model, x, y, Recipe(epochs=4, batch_size=32), seed=0, on_epoch=monitor)


def test_monitor_leaves_training_unchanged(tmp_path):
    """Weights trained with the monitor as on_epoch callback equal those trained without it."""
    x, y = _data()
    plain = _train(None)
    with Monitor(tmp_path / "r.sqlite", "run", inputs=x[:64], layers=["act2"],
                 concepts=[Concept("label", "act2", y[:64])]) as monitor:
        watched = _train(monitor)
    for (name, a), b in zip(plain.state_dict().items(), watched.state_dict().values()):
        assert torch.equal(a, b), name


def test_monitor_records_measures(tmp_path):
    """Per-layer weight and gradient norms, update sizes, activation statistics, rank, probe
    accuracy, custom measures and the loop's scalars are all in the store, one point per epoch."""
    x, y = _data()
    with Monitor(tmp_path / "r.sqlite", "run", kind="test", meta={"note": "x"}, inputs=x[:64], layers=["act1"],
                 concepts=[Concept("label", "act2", y[:64])],
                 custom={"head_rows": lambda m: {"max": float(m.head.weight.norm(dim=1).max())}}) as monitor:
        _train(monitor)
    store = MonitorStore(tmp_path / "r.sqlite")
    series = store.series("run")
    for name in ("loss", "weight_norm/fc1", "weight_norm/total", "grad_norm/head", "update/fc2",
                 "act/act1/mean", "act/act1/zero_frac", "act/act2/rank", "probe/label", "head_rows/max"):
        assert name in series, name
        steps, values = series[name]
        assert torch.isfinite(torch.as_tensor(values)).all(), name
    assert list(series["weight_norm/total"][0]) == [0, 1, 2, 3]
    assert list(series["update/fc2"][0]) == [1, 2, 3]  # no update before the first record
    assert series["loss"][1][-1] < series["loss"][1][0]
    run = store.run("run")
    assert (run["kind"], run["status"], run["meta"]["note"]) == ("test", "done", "x")


def test_monitor_marks_failed_run(tmp_path):
    """A loop that raises leaves a run marked failed, with the points recorded before it."""
    x, _ = _data()
    with pytest.raises(RuntimeError):
        with Monitor(tmp_path / "r.sqlite", "boom") as monitor:
            monitor.record(0, _train(None), loss=1.0)
            raise RuntimeError("diverged")
    store = MonitorStore(tmp_path / "r.sqlite")
    assert store.run("boom")["status"] == "failed"
    assert store.series("boom", ["loss"])["loss"][1].tolist() == [1.0]


def test_store_shares_file_with_game_store_and_checks_schema(tmp_path):
    """Monitor tables live beside the game's cells; a newer monitor schema is refused."""
    path = tmp_path / "r.sqlite"
    MonitorStore(path).start_run("a", "test", {})
    Store(path).close()  # the game's store opens the same file without complaint
    assert [r["run_id"] for r in MonitorStore(path).runs()] == ["a"]
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='monitor_schema_version'")
    with pytest.raises(MonitorError, match="monitor schema 99"):
        MonitorStore(path)


def test_unknown_run_and_measure_are_clear_errors(tmp_path):
    store = MonitorStore(tmp_path / "r.sqlite")
    with pytest.raises(MonitorError, match="no monitor run"):
        store.series("nope")
    store.start_run("a", "test", {})
    store.add_points("a", [(0, "loss", 1.0)])
    with pytest.raises(MonitorError, match="no measure"):
        store.series("a", ["accuracy"])


def test_concept_labels_must_match_inputs(tmp_path):
    x, y = _data()
    with pytest.raises(ValueError, match="labels"):
        Monitor(tmp_path / "r.sqlite", "r", inputs=x[:10], concepts=[Concept("label", "act2", y[:9])])


def test_effective_rank_and_probe_measure_what_they_say():
    g = torch.Generator().manual_seed(0)
    rank_one = torch.randn(200, 1, generator=g) @ torch.randn(1, 16, generator=g)
    assert effective_rank(rank_one) == pytest.approx(1.0, abs=0.05)
    assert effective_rank(torch.randn(2000, 16, generator=g)) > 14
    x = torch.randn(400, 8, generator=g)
    assert probe_accuracy(x, (x[:, 0] > 0).long()) > 0.9
    assert probe_accuracy(x, torch.randint(0, 2, (400,), generator=g)) < 0.7


def test_zoo_builds_are_monitored(smoke_zoo):
    """Every smoke organism's training is a done monitor run in the default results store."""
    store = MonitorStore(default_store_path())
    runs = {r["meta"]["organism_id"]: r for r in store.runs(kind="zoo")}
    for oid in smoke_zoo.manifest["organisms"]:
        assert oid in runs and runs[oid]["status"] == "done", oid
        series = store.series(runs[oid]["run_id"], ["loss", "weight_norm/total", "probe/label"])
        assert series["probe/label"][1][-1] > 0.5  # a trained digits model separates its classes


def test_cli_lists_and_plots_a_run(tmp_path):
    path = tmp_path / "r.sqlite"
    x, y = _data()
    with Monitor(path, "cli-run", inputs=x[:32], layers=["act2"]) as monitor:
        _train(monitor)
    runner = CliRunner()
    listed = runner.invoke(app, ["monitor", "list", "--store", str(path)])
    assert listed.exit_code == 0 and "cli-run" in listed.output
    png = tmp_path / "plot.png"
    shown = runner.invoke(app, ["monitor", "show", "cli-run", "--store", str(path), "--plot", str(png)])
    assert shown.exit_code == 0, shown.output
    assert "weight_norm/total" in shown.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    missing = runner.invoke(app, ["monitor", "show", "nope", "--store", str(path)])
    assert missing.exit_code == 2 and "no monitor run" in missing.output
