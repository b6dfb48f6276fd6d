"""Where deepaudit keeps its caches (data sets, organisms) and its results store."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The deepaudit home: ``$DEEPAUDIT_HOME``, else ``~/.cache/deepaudit``."""
    root = os.environ.get("DEEPAUDIT_HOME")
    path = Path(root) if root else Path.home() / ".cache" / "deepaudit"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_zoo_dir() -> Path:
    return home() / "zoo"


def default_store_path() -> Path:
    return home() / "results.sqlite"
