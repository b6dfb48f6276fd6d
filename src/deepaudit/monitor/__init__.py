"""The training monitor: a callback for any PyTorch training loop that records internal
progress measures into the results store, and views (tables, plots) of the recorded runs."""

from deepaudit.lazy import lazy_attributes

_WHERE = {
    "Concept": "deepaudit.monitor.monitor",
    "MONITOR_SCHEMA_VERSION": "deepaudit.monitor.store",
    "Monitor": "deepaudit.monitor.monitor",
    "MonitorError": "deepaudit.monitor.store",
    "MonitorStore": "deepaudit.monitor.store",
}
__all__ = sorted(_WHERE)
__getattr__ = lazy_attributes(__name__, _WHERE)
