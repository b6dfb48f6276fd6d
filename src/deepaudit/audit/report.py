"""The report: one schema-versioned JSON document and its self-contained HTML view, both
rewritten atomically after every stage so that an audit that stops keeps what it found."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
REPORT_JSON, REPORT_HTML = "report.json", "report.html"
PACKAGES = ("deepaudit", "torch", "numpy", "scikit-learn", "safetensors", "matplotlib", "transformers")


def versions() -> dict[str, str]:
    """Python and the versions of the packages that produced the report."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_report(report: dict[str, Any], out: Path) -> None:
    """Write ``report.json`` and ``report.html`` into ``out``."""
    from deepaudit.audit.page import render_html

    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / REPORT_JSON, json.dumps(report, indent=1, default=_jsonable))
    _atomic_write(out / REPORT_HTML, render_html(report))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
