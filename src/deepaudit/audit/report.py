"""The report: one schema-versioned JSON document and its self-contained HTML view, both
rewritten atomically after every stage so that an audit that stops keeps what it found."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from deepaudit.errors import DeepAuditError
from deepaudit.paths import atomic_write_text

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


class ReportError(DeepAuditError):
    """The report folder cannot be created or written."""


def write_report(report: dict[str, Any], out: Path) -> None:
    """Write ``report.json`` and ``report.html`` into ``out``; a folder that cannot hold them
    (an existing file, no permission, a full disk) raises ReportError naming it."""
    from deepaudit.audit.page import render_html

    if out.exists() and not out.is_dir():
        raise ReportError(f"the report folder {out} is a file, not a folder: give --out a new or existing folder")
    text = json.dumps(report, indent=1, default=_jsonable), render_html(report)
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / REPORT_JSON, text[0])
        atomic_write_text(out / REPORT_HTML, text[1])
    except OSError as exc:
        raise ReportError(f"cannot write the report into {out}: {exc.strerror or exc}") from exc


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
