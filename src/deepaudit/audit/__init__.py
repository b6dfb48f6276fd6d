"""The audit of a user's own model: one command, staged cheapest first inside a time budget,
ending in a JSON and a self-contained HTML report. Tools are used through their protocols
and see a Subject; the organism's truth is read only by ``truthcheck``, after the audit.

``run_audit`` and ``load_audited_model`` are imported on first use, so that the command line
starts without loading torch."""

from deepaudit.lazy import lazy_attributes

__all__ = ["load_audited_model", "run_audit"]
__getattr__ = lazy_attributes(__name__, {"run_audit": "deepaudit.audit.protocol",
                                         "load_audited_model": "deepaudit.audit.source"})
