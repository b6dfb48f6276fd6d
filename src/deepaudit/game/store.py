"""The results store: one SQLite file, schema-versioned. Every finished cell (organism x
tool) is committed on its own, so an interrupted run loses nothing it finished and a rerun
skips it. Tables, leaderboards and reports are views of this store."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from deepaudit.errors import DeepAuditError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    suite TEXT NOT NULL, seed INTEGER NOT NULL, organism_id TEXT NOT NULL, tool TEXT NOT NULL,
    budget INTEGER NOT NULL, status TEXT NOT NULL, answer TEXT, scores TEXT, error TEXT,
    wall_s REAL, forward_passes INTEGER, finished_at REAL NOT NULL,
    PRIMARY KEY (suite, seed, organism_id, tool, budget)
);
"""


@dataclass(frozen=True)
class CellKey:
    suite: str
    seed: int
    organism_id: str
    tool: str
    budget: int


class Store:
    """A results store at ``path`` (created on first use)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(_SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise DeepAuditError(f"{self.path} is not a deepaudit results store: {exc}") from exc
        if row is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            self.db.close()
            raise DeepAuditError(f"{self.path} has store schema {row[0]}; this deepaudit reads schema "
                                 f"{SCHEMA_VERSION}. Use a new --store path.")

    def close(self) -> None:
        self.db.close()

    def done(self, suite: str, seed: int, budget: int) -> set[tuple[str, str]]:
        """(organism, tool) pairs already finished for this suite, seed and budget."""
        rows = self.db.execute("SELECT organism_id, tool FROM cells WHERE suite=? AND seed=? AND budget=? "
                               "AND status='done'", (suite, seed, budget))
        return set(rows)

    def put(self, key: CellKey, status: str, answer: dict | None = None, scores: dict | None = None,
            error: str | None = None, wall_s: float | None = None, forward_passes: int | None = None) -> None:
        """Record one cell, in its own transaction."""
        self.put_many([(key, status, answer, scores, error, wall_s, forward_passes)])

    def put_many(self, rows: list[tuple]) -> None:
        """Record several cells (``put``'s arguments, in order) in one transaction: all or none."""
        with self.db:
            for key, status, answer, scores, error, wall_s, forward_passes in rows:
                self.db.execute(
                    "INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (key.suite, key.seed, key.organism_id, key.tool, key.budget, status,
                     json.dumps(answer) if answer is not None else None,
                     json.dumps(scores) if scores is not None else None, error, wall_s, forward_passes,
                     time.time()))

    def cells(self, suite: str | None = None, seed: int | None = None, status: str = "done",
              budget: int | None = None) -> Iterator[dict[str, Any]]:
        """Cells with this status as dicts, with ``answer`` and ``scores`` decoded."""
        query, args = "SELECT * FROM cells WHERE status=?", [status]
        for column, value in (("suite", suite), ("seed", seed), ("budget", budget)):
            if value is not None:
                query, args = query + f" AND {column}=?", args + [value]
        cursor = self.db.execute(query + " ORDER BY suite, seed, organism_id, tool", args)
        names = [c[0] for c in cursor.description]
        for row in cursor:
            cell = dict(zip(names, row))
            for field in ("answer", "scores"):
                cell[field] = json.loads(cell[field]) if cell[field] else None
            yield cell

    def budgets(self, suite: str, seed: int) -> list[int]:
        """The clean-data budgets that finished cells of this suite and seed were run with."""
        rows = self.db.execute("SELECT DISTINCT budget FROM cells WHERE suite=? AND seed=? AND status='done' "
                               "ORDER BY budget", (suite, seed))
        return [r[0] for r in rows]


def read_cells(path: Path, suite: str, seed: int, budget: int | None = None) -> list[dict[str, Any]]:
    """The finished cells of a suite and seed, from the store at ``path``. Runs with different
    clean-data budgets are never mixed: ``budget`` must pick one when the store holds several."""
    store = Store(path)
    try:
        budgets = store.budgets(suite, seed)
        if budget is None and len(budgets) > 1:
            raise ValueError(f"the store holds suite {suite!r} seed {seed} at budgets {budgets}; choose one with --budget")
        cells = list(store.cells(suite, seed, budget=budget))
    finally:
        store.close()
    if not cells:
        raise ValueError(f"no results for suite {suite!r} seed {seed} in {path}; run `deepaudit game run` first")
    return cells
