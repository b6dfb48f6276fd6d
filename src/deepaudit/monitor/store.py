"""The monitor's tables in the results store: one row per run, one row per (run, step, measure).
They live in the same SQLite file as the game's cells (``deepaudit.game.store``) but are
versioned on their own (``monitor_schema_version`` in the shared ``meta`` table), so either
side can change without breaking the other."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.errors import DeepAuditError
from deepaudit.game.store import open_store, run_script

MONITOR_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS monitor_runs (
    run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, meta TEXT NOT NULL, status TEXT NOT NULL,
    started_at REAL NOT NULL, finished_at REAL
);
CREATE TABLE IF NOT EXISTS monitor_points (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, measure TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_id, step, measure)
);
"""


class MonitorError(DeepAuditError):
    """A monitor run or measure that does not exist, or a store the monitor cannot use."""


class MonitorStore:
    """The monitor's view of the results store at ``path`` (created on first use). Safe to open
    from several processes at once (WAL journal, waits for locks)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = open_store(self.path, self._create)

    def _create(self, db: sqlite3.Connection) -> None:
        """Create the monitor's tables (in the transaction ``open_store`` holds), or check their schema."""
        run_script(db, _SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key='monitor_schema_version'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('monitor_schema_version', ?)", (str(MONITOR_SCHEMA_VERSION),))
        elif int(row[0]) != MONITOR_SCHEMA_VERSION:
            raise MonitorError(f"{self.path} has monitor schema {row[0]}; this deepaudit reads schema "
                               f"{MONITOR_SCHEMA_VERSION}. Use a new --store path.")

    def close(self) -> None:
        self.db.close()

    def start_run(self, run_id: str, kind: str, meta: dict[str, Any]) -> None:
        """Open (or restart, dropping its old points) the run ``run_id``."""
        with self.db:
            self.db.execute("DELETE FROM monitor_points WHERE run_id=?", (run_id,))
            self.db.execute("INSERT OR REPLACE INTO monitor_runs VALUES (?,?,?,?,?,NULL)",
                            (run_id, kind, json.dumps(meta), "running", time.time()))

    def add_points(self, run_id: str, points: Iterable[tuple[int, str, float]]) -> None:
        """Record (step, measure, value) points of a run, in one transaction."""
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO monitor_points VALUES (?,?,?,?)",
                                ((run_id, int(s), m, float(v)) for s, m, v in points))

    def finish_run(self, run_id: str, status: str, meta: dict[str, Any] | None = None) -> None:
        """Mark a run finished (``done`` or ``failed``), merging ``meta`` into its metadata."""
        merged = {**self.run(run_id)["meta"], **(meta or {})}
        with self.db:
            self.db.execute("UPDATE monitor_runs SET status=?, finished_at=?, meta=? WHERE run_id=?",
                            (status, time.time(), json.dumps(merged), run_id))

    def run(self, run_id: str) -> dict[str, Any]:
        """One run's row, with ``meta`` decoded."""
        runs = [r for r in self.runs() if r["run_id"] == run_id]
        if not runs:
            raise MonitorError(f"no monitor run {run_id!r} in {self.path}")
        return runs[0]

    def runs(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every run (of ``kind``), oldest first, with its number of recorded points."""
        query = ("SELECT r.*, (SELECT COUNT(*) FROM monitor_points p WHERE p.run_id=r.run_id) AS points "
                 "FROM monitor_runs r")
        cursor = self.db.execute(query + (" WHERE kind=?" if kind else "") + " ORDER BY started_at, run_id",
                                 (kind,) if kind else ())
        names = [c[0] for c in cursor.description]
        return [{**dict(zip(names, row)), "meta": json.loads(row[names.index("meta")])} for row in cursor]

    def series(self, run_id: str, measures: Iterable[str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Measure name -> (steps, values) of a run, sorted by step."""
        self.run(run_id)
        rows = self.db.execute("SELECT measure, step, value FROM monitor_points WHERE run_id=? "
                               "ORDER BY measure, step", (run_id,)).fetchall()
        wanted = set(measures) if measures is not None else None
        out: dict[str, tuple[list[int], list[float]]] = {}
        for measure, step, value in rows:
            if wanted is None or measure in wanted:
                steps, values = out.setdefault(measure, ([], []))
                steps.append(step)
                values.append(np.nan if value is None else value)
        if wanted and (missing := sorted(wanted - set(out))):
            raise MonitorError(f"run {run_id!r} has no measure {missing}; it has {sorted(self.measures(run_id))}")
        return {m: (np.asarray(s), np.asarray(v, dtype=float)) for m, (s, v) in out.items()}

    def measures(self, run_id: str) -> list[str]:
        """The names of the measures recorded for a run."""
        return [r[0] for r in self.db.execute("SELECT DISTINCT measure FROM monitor_points WHERE run_id=? "
                                              "ORDER BY measure", (run_id,))]
