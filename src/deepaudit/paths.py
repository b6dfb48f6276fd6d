"""Where deepaudit keeps its caches (data sets, organisms) and its results store."""

from __future__ import annotations

import os
from pathlib import Path

from deepaudit.errors import DeepAuditError


def home() -> Path:
    """The deepaudit home: ``$DEEPAUDIT_HOME``, else ``~/.cache/deepaudit`` (created if need be)."""
    root = os.environ.get("DEEPAUDIT_HOME")
    path = Path(root) if root else Path.home() / ".cache" / "deepaudit"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        source = "DEEPAUDIT_HOME" if root else "the default deepaudit home (set DEEPAUDIT_HOME to choose another)"
        raise DeepAuditError(f"cannot create the deepaudit home {path}, from {source}: {exc.strerror}") from exc
    return path


def default_zoo_dir() -> Path:
    return home() / "zoo"


def default_store_path() -> Path:
    return home() / "results.sqlite"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: into a file of this process's own, then
    renamed over it, so that a reader in another process never sees half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
