"""The true/false statement sets of Marks & Tegmark's "Geometry of Truth", kept in the shared
data folder beside the repository (``../shared/data/truth``) or at ``$DEEPAUDIT_TRUTH_DIR``."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepaudit.errors import DataError

SETS = ("cities", "neg_cities", "sp_en_trans", "larger_than", "companies_true_false")


@dataclass(frozen=True)
class StatementSet:
    """Statements and their labels (1 = true, 0 = false)."""

    name: str
    statements: list[str]
    labels: np.ndarray

    def sample(self, n: int, seed: int = 0) -> StatementSet:
        """A class-balanced random subset of at most ``n`` statements (all of them if fewer)."""
        rng = np.random.default_rng(seed)
        per_class = n // 2
        idx = np.concatenate([rng.permutation(np.flatnonzero(self.labels == c))[:per_class] for c in (0, 1)])
        idx = rng.permutation(idx)
        return StatementSet(self.name, [self.statements[i] for i in idx], self.labels[idx])


def truth_dir() -> Path:
    """``$DEEPAUDIT_TRUTH_DIR`` if set, else ``<repository>/../shared/data/truth``."""
    env = os.environ.get("DEEPAUDIT_TRUTH_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "truth"
    if not path.is_dir():
        raise DataError(f"no statement sets at {path}: expected the shared data folder beside the repository "
                        "(../shared/data/truth) or DEEPAUDIT_TRUTH_DIR pointing at it")
    return path


def _rows(name: str, folder: Path | None = None) -> tuple[Path, list[dict[str, str]]]:
    path = (folder or truth_dir()) / f"{name}.csv"
    if not path.is_file():
        raise DataError(f"no statement set {name!r} at {path}; known sets: {', '.join(SETS)}")
    with path.open(newline="", encoding="utf-8") as fh:
        return path, list(csv.DictReader(fh))


def load_column(name: str, column: str, folder: Path | None = None) -> np.ndarray:
    """One numeric column of a statement set, row for row with ``load_statements``."""
    path, rows = _rows(name, folder)
    if not rows or column not in rows[0]:
        raise DataError(f"{path} has no column {column!r}")
    return np.array([float(r[column]) for r in rows])


def load_statements(name: str, folder: Path | None = None) -> StatementSet:
    """Read ``<name>.csv`` (columns ``statement`` and ``label``) from the truth folder."""
    path, rows = _rows(name, folder)
    if not rows or "statement" not in rows[0] or "label" not in rows[0]:
        raise DataError(f"{path} needs the columns 'statement' and 'label'")
    return StatementSet(name, [r["statement"] for r in rows], np.array([int(r["label"]) for r in rows]))
