"""The training monitor: a callback for any PyTorch training loop that records internal
progress measures into the results store, and views (tables, plots) of the recorded runs."""

from deepaudit.monitor.monitor import Concept, Monitor
from deepaudit.monitor.store import MONITOR_SCHEMA_VERSION, MonitorError, MonitorStore

__all__ = ["Concept", "MONITOR_SCHEMA_VERSION", "Monitor", "MonitorError", "MonitorStore"]
