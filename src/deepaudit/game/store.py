"""The results store: one SQLite file, schema-versioned. A cell is keyed by suite, seed,
organism, tool, a digest of the tool's parameters, track and clean-data budget; it holds the
track's scores for that organism, the organism's labels, the tool's answer and its cost. The
runner commits each organism's cells in one transaction, so an interrupted run loses nothing it
finished and a rerun skips it; a tool with changed parameters gets new cells, never the old
ones. Tables, leaderboards and reports are views of this store.

Several processes may open, create and write one store at once. A run claims the cells it is
about to compute (``Store.claim``), so a second run on the same store skips them; a claim ends
when its run closes the store, and a crashed run's claims are taken over. A file that is not a
deepaudit store (another program's SQLite file) is refused before anything is written to it.

A schema-1 store (deepaudit before the one-game runner) is migrated in place on first open:
its cells table is kept unchanged as ``cells_v1`` (``Store.legacy_cells`` reads it) and new
results go to the schema-2 table, so old and new results are never mixed."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepaudit.errors import DeepAuditError

SCHEMA_VERSION = 3
OWN_TABLES = {"meta", "cells", "cells_v1", "tool_params", "claims", "monitor_runs", "monitor_points"}
VERSION_KEYS = ("schema_version", "monitor_schema_version")  # one of them marks a file as a deepaudit store
LOCK_TIMEOUT_S = 120.0  # how long to wait for another process's transaction
CLAIM_STALE_S = 24 * 3600.0  # a claim this old is taken over, even if its run may be alive elsewhere

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    suite TEXT NOT NULL, seed INTEGER NOT NULL, organism_id TEXT NOT NULL, tool TEXT NOT NULL,
    params TEXT NOT NULL, track TEXT NOT NULL, budget INTEGER NOT NULL, status TEXT NOT NULL,
    answer TEXT, scores TEXT, labels TEXT, error TEXT, wall_s REAL, forward_passes INTEGER, shared TEXT,
    finished_at REAL NOT NULL, cpu_s REAL,
    PRIMARY KEY (suite, seed, organism_id, tool, params, track, budget)
);
CREATE TABLE IF NOT EXISTS tool_params (
    tool TEXT NOT NULL, params TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (tool, params)
);
CREATE TABLE IF NOT EXISTS claims (
    suite TEXT NOT NULL, seed INTEGER NOT NULL, budget INTEGER NOT NULL, organism_id TEXT NOT NULL,
    tool TEXT NOT NULL, params TEXT NOT NULL, owner TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    claimed_at REAL NOT NULL,
    PRIMARY KEY (suite, seed, budget, organism_id, tool, params)
);
"""
_JSON = ("answer", "scores", "labels", "shared")


class StoreError(DeepAuditError):
    """A file that is not a deepaudit results store, a store of another schema, or a store
    that cannot be opened or written where it is."""


def _failure(path: Path, exc: sqlite3.Error) -> StoreError:
    """Say what went wrong: the file is not SQLite at all, or SQLite cannot read or write it there."""
    if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return StoreError(f"{path} is not a deepaudit results store (not a SQLite database: {exc}); "
                          "give --store a path of its own")
    return StoreError(f"cannot open or write the results store {path}: {exc} "
                      "(SQLite needs to write the file and a journal beside it, in the same folder)")


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements inside the open transaction (``executescript`` would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _check_ours(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a SQLite file that another program made: one with tables, but not only deepaudit's,
    or without a deepaudit schema version. Reads only."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
              if not r[0].startswith("sqlite_")}
    ours = "meta" in tables and tables <= OWN_TABLES and db.execute(
        f"SELECT 1 FROM meta WHERE key IN ({','.join('?' * len(VERSION_KEYS))})", VERSION_KEYS).fetchone()
    if tables and not ours:
        raise StoreError(f"{path} is a SQLite file of another program (tables {sorted(tables)}); deepaudit left it "
                         "untouched: give deepaudit a path of its own with --store")


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch the store to the WAL journal (readers never block the writer). SQLite refuses the
    switch at once, without waiting, while another process is making it: try again then."""
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def open_store(path: Path, setup: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
    """Open the results store at ``path``, creating it if need be, safely from several processes
    at once. In one transaction: refuse a file that is not a deepaudit store before writing
    anything to it, then ``setup`` creates or checks the caller's tables. Every failure is a
    StoreError that names the path and says what is wrong."""
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"{path} is a folder; --store takes the path of a results file (results.sqlite)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the results store {path}: its folder {path.parent} cannot be made "
                         f"({exc.strerror})") from exc
    try:
        db = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise _failure(path, exc) from exc
    try:
        with db:
            db.execute("BEGIN IMMEDIATE")  # one process at a time checks, creates or migrates
            _check_ours(db, path)
            setup(db)
        _use_wal(db)
    except sqlite3.Error as exc:
        db.close()
        raise _failure(path, exc) from exc
    except BaseException:
        db.close()
        raise
    return db


@dataclass(frozen=True)
class CellKey:
    """Where a cell lives: suite, seed, organism, tool, parameter digest, track, budget."""

    suite: str
    seed: int
    organism_id: str
    tool: str
    params: str
    track: str
    budget: int


@dataclass
class Cell:
    """One stored cell (``track`` empty on a row that only records a skipped or failed tool)."""

    key: CellKey
    status: str
    answer: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    labels: dict[str, Any] | None = None
    error: str | None = None
    wall_s: float | None = None
    forward_passes: int | None = None
    shared: dict[str, Any] = field(default_factory=dict)
    cpu_s: float | None = None


class Store:
    """A results store at ``path`` (created on first use; safe to open from several processes).
    Cells it claims (``claim``) stay its own until ``release`` or ``close``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = open_store(self.path, self._create_or_migrate)
        self.owner, self.claimed = uuid.uuid4().hex, False

    def _create_or_migrate(self, db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is not None and int(row[0]) == 1:
            db.execute("ALTER TABLE cells RENAME TO cells_v1")
        elif row is not None and int(row[0]) == 2:  # schema 3 added the tool's own CPU seconds
            db.execute("ALTER TABLE cells ADD COLUMN cpu_s REAL")
        elif row is not None and int(row[0]) != SCHEMA_VERSION:
            raise StoreError(f"{self.path} has store schema {row[0]}; this deepaudit reads schema {SCHEMA_VERSION}. "
                             "Use a new --store path.")
        run_script(db, _SCHEMA)
        if row is None or int(row[0]) != SCHEMA_VERSION:  # an open that changes nothing writes nothing
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        """Release this store's claims and close the file."""
        self.release()
        self.db.close()

    def claim(self, suite: str, seed: int, budget: int, organism: str, tool: str, digest: str) -> bool:
        """Claim a cell for this store's run, so that a second run on the same store skips it.
        False if the cell is finished, or claimed by another run that may still be going: one
        whose process is alive on this host, or, from another host, younger than CLAIM_STALE_S.
        A crashed run's claims are taken over, so none blocks a cell forever."""
        key = (suite, seed, budget, organism, tool, digest)
        host, now = socket.gethostname(), time.time()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            if self.db.execute("SELECT 1 FROM cells WHERE suite=? AND seed=? AND budget=? AND organism_id=? AND "
                               "tool=? AND params=? AND status IN ('done', 'skipped')", key).fetchone():
                return False
            held = self.db.execute("SELECT owner, host, pid, claimed_at FROM claims WHERE suite=? AND seed=? AND "
                                   "budget=? AND organism_id=? AND tool=? AND params=?", key).fetchone()
            if held is not None and held[0] != self.owner and now - held[3] < CLAIM_STALE_S and (
                    held[1] != host or _alive(held[2])):
                return False
            self.db.execute("INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?,?,?,?,?,?)",
                            (*key, self.owner, host, os.getpid(), now))
        self.claimed = True
        return True

    def release(self) -> None:
        """Give up every claim this store holds (finished cells need none)."""
        if self.claimed:
            with self.db:
                self.db.execute("DELETE FROM claims WHERE owner=?", (self.owner,))
            self.claimed = False

    def done(self, suite: str, seed: int, budget: int) -> set[tuple[str, str, str]]:
        """(organism, tool, params) finished for this suite, seed and budget (scored or not applicable)."""
        rows = self.db.execute("SELECT organism_id, tool, params FROM cells WHERE suite=? AND seed=? AND budget=? "
                               "AND status IN ('done', 'skipped')", (suite, seed, budget))
        return set(rows)

    def put(self, cells: Iterable[Cell]) -> None:
        """Record cells in one transaction (all or none); a finished cell replaces a failed one."""
        cells = list(cells)
        with self.db:
            for key in {(c.key.suite, c.key.seed, c.key.organism_id, c.key.tool, c.key.params, c.key.budget)
                        for c in cells}:
                self.db.execute("DELETE FROM cells WHERE suite=? AND seed=? AND organism_id=? AND tool=? AND params=? "
                                "AND budget=?", key)
            for c in cells:
                k = c.key
                self.db.execute(
                    "INSERT INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (k.suite, k.seed, k.organism_id, k.tool, k.params, k.track, k.budget, c.status,
                     *(json.dumps(v) if v is not None else None for v in (c.answer, c.scores, c.labels)),
                     c.error, c.wall_s, c.forward_passes, json.dumps(c.shared), time.time(), c.cpu_s))

    def put_params(self, tool: str, digest: str, params: dict[str, Any]) -> None:
        """Remember which parameters a digest stands for."""
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO tool_params VALUES (?,?,?)",
                            (tool, digest, json.dumps(params, sort_keys=True, default=repr)))

    def params(self, tool: str, digest: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT value FROM tool_params WHERE tool=? AND params=?", (tool, digest)).fetchone()
        return json.loads(row[0]) if row else None

    def cells(self, suite: str | None = None, seed: int | None = None, status: str = "done",
              budget: int | None = None) -> Iterator[dict[str, Any]]:
        """Cells with this status as dicts, their JSON columns decoded."""
        wanted = {k: v for k, v in (("status", status), ("suite", suite), ("seed", seed), ("budget", budget))
                  if v is not None}
        query = "SELECT * FROM cells WHERE " + " AND ".join(f"{column}=?" for column in wanted)
        cursor = self.db.execute(query + " ORDER BY suite, seed, organism_id, tool, params, track", list(wanted.values()))
        names = [c[0] for c in cursor.description]
        for row in cursor:
            cell = dict(zip(names, row))
            for name in _JSON:
                cell[name] = json.loads(cell[name]) if cell[name] else ({} if name == "shared" else None)
            yield cell

    def budgets(self, suite: str, seed: int) -> list[int]:
        """The clean-data budgets that finished cells of this suite and seed were run with."""
        rows = self.db.execute("SELECT DISTINCT budget FROM cells WHERE suite=? AND seed=? AND status='done' "
                               "ORDER BY budget", (suite, seed))
        return [r[0] for r in rows]

    def legacy_cells(self, suite: str, seed: int) -> list[dict[str, Any]]:
        """The finished cells a schema-1 store held (kept as they were), JSON decoded."""
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE name='cells_v1'").fetchone():
            return []
        cursor = self.db.execute("SELECT * FROM cells_v1 WHERE suite=? AND seed=? AND status='done'", (suite, seed))
        names = [c[0] for c in cursor.description]
        out = []
        for row in cursor:
            cell = dict(zip(names, row))
            for name in ("answer", "scores"):
                cell[name] = json.loads(cell[name]) if cell[name] else None
            out.append(cell)
        return out


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def read_cells(path: Path, suite: str, seed: int, budget: int | None = None) -> list[dict[str, Any]]:
    """The finished cells of a suite and seed, from the store at ``path``. Runs with different
    clean-data budgets are never mixed: ``budget`` must pick one when the store holds several."""
    if not Path(path).exists():
        raise StoreError(f"no results store at {path}; run `deepaudit game run --suite {suite}` first")
    store = Store(path)
    try:
        budgets = store.budgets(suite, seed)
        if budget is None and len(budgets) > 1:
            raise StoreError(f"the store holds suite {suite!r} seed {seed} at budgets {budgets}; choose one with --budget")
        cells = list(store.cells(suite, seed, budget=budget))
    finally:
        store.close()
    if not cells:
        raise StoreError(f"no results for suite {suite!r} seed {seed} in {path}; run `deepaudit game run` first")
    return cells
