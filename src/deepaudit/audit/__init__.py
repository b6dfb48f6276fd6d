"""The audit of a user's own model: one command, staged cheapest first inside a time budget,
ending in a JSON and a self-contained HTML report. Tools are used through their protocols
and see a Subject; the organism's truth is read only by ``truthcheck``, after the audit.

``run_audit`` and ``load_audited_model`` are imported on first use, so that the command line
starts without loading torch."""

from typing import Any

__all__ = ["load_audited_model", "run_audit"]


def __getattr__(name: str) -> Any:
    if name == "run_audit":
        from deepaudit.audit.protocol import run_audit

        return run_audit
    if name == "load_audited_model":
        from deepaudit.audit.source import load_audited_model

        return load_audited_model
    raise AttributeError(f"module 'deepaudit.audit' has no attribute {name!r}")
