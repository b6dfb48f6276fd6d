"""How the deepaudit command line sets up glibc's malloc: keep freed memory for reuse.

Capturing activations keeps tensors alive past the forward pass. With glibc's default settings
large freed blocks go back to the system, so every captured pass faults in fresh zeroed pages
where a bare pass reuses its own buffers: at batch 256 on the zoo's CNN that alone made a
traced every-layer capture cost 1.25-1.56x a bare forward instead of 1.03-1.07x (README,
"Activation capture"). The ``deepaudit`` command therefore raises glibc's trim and mmap
thresholds at start-up, as ``MALLOC_TRIM_THRESHOLD_``/``MALLOC_MMAP_THRESHOLD_`` would from
outside; ``DEEPAUDIT_MALLOC=system`` keeps the system's settings. Importing deepaudit as a
library changes nothing: call ``keep_freed_memory()`` to opt in."""

from __future__ import annotations

import ctypes
import os

from deepaudit.errors import DeepAuditError

ENV = "DEEPAUDIT_MALLOC"
MODES = ("keep", "system")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h


def _libc_mallopt():
    """glibc's ``mallopt`` among the symbols already loaded in this process (no library search
    at start-up), or None under another C library."""
    return getattr(ctypes.CDLL(None), "mallopt", None)


def keep_freed_memory(size: int = 1 << 28) -> None:
    """Tell glibc's malloc, in this process, to keep freed blocks up to ``size`` bytes for reuse
    instead of returning their pages to the system. Raises where the C library has no mallopt."""
    mallopt = _libc_mallopt()
    if mallopt is None:
        raise DeepAuditError("keeping freed memory needs glibc's mallopt; this C library has none")
    if not (mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(size)) and mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(size))):
        raise DeepAuditError(f"glibc's mallopt refused a threshold of {size} bytes")


def configure_from_env() -> str:
    """Apply ``$DEEPAUDIT_MALLOC`` (``keep``, the default, or ``system``); returns the mode in
    effect: ``system`` also where the C library is not glibc."""
    mode = os.environ.get(ENV, "keep")
    if mode not in MODES:
        raise DeepAuditError(f"{ENV}={mode!r}: expected one of {MODES}")
    if mode == "keep":
        try:
            keep_freed_memory()
        except DeepAuditError:
            return "system"
    return mode
