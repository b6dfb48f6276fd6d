"""The results store: one SQLite file, schema-versioned. A cell is keyed by suite, seed,
organism, tool, a digest of the tool's parameters, track and clean-data budget; it holds the
track's scores for that organism, the organism's labels, the tool's answer and its cost. The
runner commits each organism's cells in one transaction, so an interrupted run loses nothing it
finished and a rerun skips it; a tool with changed parameters gets new cells, never the old
ones. Tables, leaderboards and reports are views of this store.

A schema-1 store (deepaudit before the one-game runner) is migrated in place on first open:
its cells table is kept unchanged as ``cells_v1`` (``Store.legacy_cells`` reads it) and new
results go to the schema-2 table, so old and new results are never mixed."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepaudit.errors import DeepAuditError

SCHEMA_VERSION = 2
OWN_TABLES = {"meta", "cells", "cells_v1", "tool_params", "monitor_runs", "monitor_points"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    suite TEXT NOT NULL, seed INTEGER NOT NULL, organism_id TEXT NOT NULL, tool TEXT NOT NULL,
    params TEXT NOT NULL, track TEXT NOT NULL, budget INTEGER NOT NULL, status TEXT NOT NULL,
    answer TEXT, scores TEXT, labels TEXT, error TEXT, wall_s REAL, forward_passes INTEGER, shared TEXT,
    finished_at REAL NOT NULL,
    PRIMARY KEY (suite, seed, organism_id, tool, params, track, budget)
);
CREATE TABLE IF NOT EXISTS tool_params (
    tool TEXT NOT NULL, params TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (tool, params)
);
"""
_JSON = ("answer", "scores", "labels", "shared")


class StoreError(DeepAuditError):
    """A file that is not a deepaudit results store, or a store of another schema."""


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


class Store:
    """A results store at ``path`` (created on first use; safe to open from several processes)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder; --store takes the path of a results file (results.sqlite)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=120)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open or create the results store {self.path}: {exc}") from exc
        try:
            self._check_foreign()
            self.db.execute("PRAGMA journal_mode=WAL")
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")  # one process at a time creates or migrates
                self._create_or_migrate()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise StoreError(f"{self.path} is not a deepaudit results store: {exc}") from exc
        except StoreError:
            self.db.close()
            raise

    def _check_foreign(self) -> None:
        """Refuse, before writing anything, a SQLite file that another program made."""
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and not tables <= OWN_TABLES | {t for t in tables if t.startswith("sqlite_")}:
            raise StoreError(f"{self.path} is a SQLite file of another program (tables {sorted(tables - OWN_TABLES)}); "
                             "give deepaudit a path of its own with --store")

    def _create_or_migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is not None and int(row[0]) == 1:
            self.db.execute("ALTER TABLE cells RENAME TO cells_v1")
        elif row is not None and int(row[0]) != SCHEMA_VERSION:
            raise StoreError(f"{self.path} has store schema {row[0]}; this deepaudit reads schema {SCHEMA_VERSION}. "
                             "Use a new --store path.")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self.db.execute(statement)
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self.db.close()

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
                    "INSERT INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (k.suite, k.seed, k.organism_id, k.tool, k.params, k.track, k.budget, c.status,
                     *(json.dumps(v) if v is not None else None for v in (c.answer, c.scores, c.labels)),
                     c.error, c.wall_s, c.forward_passes, json.dumps(c.shared), time.time()))

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


def read_cells(path: Path, suite: str, seed: int, budget: int | None = None) -> list[dict[str, Any]]:
    """The finished cells of a suite and seed, from the store at ``path``. Runs with different
    clean-data budgets are never mixed: ``budget`` must pick one when the store holds several."""
    if not Path(path).is_file():
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
