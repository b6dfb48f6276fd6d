"""The results store shared by several processes, and refused where it is not one: many
processes creating one new store at once, another program's SQLite file left untouched,
unopenable stores and homes as clear errors, and cells claimed so that two runs on one store
split the work instead of doing it twice."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepaudit.cli import app
from deepaudit.game.runner import run_game
from deepaudit.game.store import Store, StoreError
from deepaudit.monitor.store import MonitorStore

FORK = multiprocessing.get_context("fork")
SIDE_FILES = ("-wal", "-shm", "-journal")


def _open_stores(paths: list[str], index: int, barrier, errors) -> None:
    """Open each new store in turn, all siblings at once (the game's view or the monitor's, by
    turns); report any error as text."""
    for i, path in enumerate(paths):
        barrier.wait()
        try:
            (Store if (index + i) % 2 else MonitorStore)(Path(path)).close()
        except Exception as exc:  # reported to the test, which shows it
            errors.put(f"{type(exc).__name__}: {exc}")


def test_many_processes_create_one_new_store_at_once(tmp_path):
    """Twelve processes open the same new stores at the same moments, over many fresh paths:
    none fails, and each store they made is whole (both schemas recorded, WAL journal)."""
    paths = [tmp_path / f"round{i}" / "results.sqlite" for i in range(80)]
    barrier, errors = FORK.Barrier(12, timeout=600), FORK.Queue()  # the timeout only ends a hang
    workers = [FORK.Process(target=_open_stores, args=([str(p) for p in paths], i, barrier, errors))
               for i in range(12)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == [] and [w.exitcode for w in workers] == [0] * 12
    for path in paths:
        with sqlite3.connect(path) as db:
            assert {k for (k,) in db.execute("SELECT key FROM meta")} == {"schema_version", "monitor_schema_version"}
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _foreign(path: Path, table: str) -> bytes:
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE {table} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(f"INSERT INTO {table} VALUES ('owner', 'another program')")
    db.commit()
    db.close()
    return path.read_bytes()


@pytest.mark.parametrize("table", ["invoices", "meta"])
def test_another_programs_sqlite_file_is_refused_and_left_as_it_was(tmp_path, table):
    """Another program's database (even one with a table called ``meta``) is refused by the
    game's store, the monitor's and the CLI, and its bytes are unchanged, with no journal beside it."""
    path = tmp_path / "other.sqlite"
    before = _foreign(path, table)
    for opener in (Store, MonitorStore):
        with pytest.raises(StoreError, match="another program"):
            opener(path)
    result = CliRunner().invoke(app, ["game", "leaderboard", "--suite", "smoke", "--store", str(path)])
    assert result.exit_code == 2 and "another program" in result.output, result.output
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["other.sqlite"]


def _store_in_a_folder(tmp_path: Path) -> Path:
    (tmp_path / "results.sqlite").mkdir()
    return tmp_path / "results.sqlite"


def _garbage(tmp_path: Path) -> Path:
    (tmp_path / "results.sqlite").write_bytes(b"not a database at all\n" * 100)
    return tmp_path / "results.sqlite"


def _below_a_file(tmp_path: Path) -> Path:
    (tmp_path / "plain").write_text("a file, not a folder")
    return tmp_path / "plain" / "results.sqlite"


def _journal_blocked(tmp_path: Path) -> Path:
    """A store whose WAL journal cannot be created beside it (as in a folder one may not write)."""
    path = tmp_path / "results.sqlite"
    Store(path).close()
    (tmp_path / "results.sqlite-wal").mkdir()
    return path


@pytest.mark.parametrize(("make", "message"), [
    (_store_in_a_folder, "is a folder"),
    (_garbage, "not a SQLite database"),
    (_below_a_file, "cannot create"),
    (_journal_blocked, "cannot open or write"),
])
def test_an_unopenable_store_is_a_clear_error(tmp_path, make, message):
    """A folder, a garbage file, a path below a file, a store whose journal cannot be written:
    each a StoreError saying which, and for `game leaderboard` and `game run` exit 2, no
    traceback (`game run` says so before building anything)."""
    path = make(tmp_path)
    with pytest.raises(StoreError, match=message):
        Store(path)
    zoo = tmp_path / "zoo"
    for command in (["game", "leaderboard"], ["game", "run", "--tools", "random", "--zoo", str(zoo)]):
        result = CliRunner().invoke(app, [*command, "--suite", "smoke", "--store", str(path)])
        assert result.exit_code == 2 and "error:" in result.output, result.output
        if command[1] == "run":
            assert message in result.output.replace("\n", " ") and not zoo.exists(), result.output


def test_an_unusable_deepaudit_home_is_named(tmp_path, monkeypatch):
    """A DEEPAUDIT_HOME that cannot be made is reported as such, not as a bad results store."""
    (tmp_path / "plain").write_text("a file, not a folder")
    monkeypatch.setenv("DEEPAUDIT_HOME", str(tmp_path / "plain" / "home"))
    for command in (["game", "leaderboard"], ["game", "run", "--tools", "random", "--jobs", "1"]):
        result = CliRunner().invoke(app, [*command, "--suite", "smoke"])
        assert result.exit_code == 2, result.output
        assert "DEEPAUDIT_HOME" in result.output and "not a deepaudit" not in result.output, result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any folder")
def test_a_read_only_deepaudit_home_is_named(tmp_path, monkeypatch):
    """A DEEPAUDIT_HOME one may not write to: the error says the store cannot be written there."""
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)
    monkeypatch.setenv("DEEPAUDIT_HOME", str(home))
    try:
        result = CliRunner().invoke(app, ["game", "run", "--suite", "smoke", "--tools", "random", "--jobs", "1"])
    finally:
        home.chmod(0o755)
    assert result.exit_code == 2, result.output
    assert "not a deepaudit" not in result.output and str(home) in result.output.replace("\n", ""), result.output


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    return int(child.stdout)


def test_claims_keep_a_cell_to_one_live_run(tmp_path):
    """A cell claimed by an open store is refused to another until released (or its store
    closes); finished cells are never claimed; a dead or very old claim is taken over."""
    path = tmp_path / "results.sqlite"
    first, second = Store(path), Store(path)
    cell = ("smoke", 0, 256, "org", "random", "d1")
    assert first.claim(*cell) and first.claim(*cell)
    assert not second.claim(*cell)
    first.release()
    assert second.claim(*cell) and not first.claim(*cell)
    second.close()
    assert first.claim(*cell)

    with sqlite3.connect(path) as db:  # a run that was killed: its process is gone
        db.execute("UPDATE claims SET pid=?", (_dead_pid(),))
    third = Store(path)
    assert third.claim(*cell)
    third.close()
    with sqlite3.connect(path) as db:  # a claim from another host, long ago
        db.execute("UPDATE claims SET owner='another run', host='elsewhere', claimed_at=0")
    assert first.claim(*cell)
    with sqlite3.connect(path) as db:  # a claim from another host, just now: respected
        db.execute("UPDATE claims SET owner='another run', host='elsewhere', claimed_at=strftime('%s','now')")
    assert not first.claim(*cell)
    first.close()


def _run_half(store: str, zoo: str, barrier, ran) -> None:
    """One `game run`: plan (claiming its cells), wait until the other run has planned too, run."""
    summary = run_game("smoke", tools=["weight_stats", "random"], store=Path(store), zoo_dir=Path(zoo),
                       on_plan=lambda todo, done: barrier.wait())
    ran.put((summary.ran + summary.not_applicable, len(summary.failed)))


def test_two_runs_on_one_store_split_the_cells(smoke_zoo, tmp_path):
    """Two `game run` on one store, both planning before either runs: every cell is run once
    in all (as many as one run alone), and the store holds them all."""
    store, barrier, ran = tmp_path / "results.sqlite", FORK.Barrier(2, timeout=600), FORK.Queue()
    runs = [FORK.Process(target=_run_half, args=(str(store), str(smoke_zoo.dir), barrier, ran)) for _ in range(2)]
    for process in runs:
        process.start()
    for process in runs:
        process.join()
    assert [p.exitcode for p in runs] == [0, 0]
    counts = [ran.get(), ran.get()]
    assert sum(n for n, _ in counts) == 6 and [f for _, f in counts] == [0, 0], counts
    again = run_game("smoke", tools=["weight_stats", "random"], store=store, zoo_dir=smoke_zoo.dir)
    assert (again.ran, again.already_done) == (0, 6)
