"""What every benchmark shares: interleaved timing with medians, the load line, the command line,
the exit on bad input."""

from __future__ import annotations

import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

from rich.console import Console
from rich.table import Table

console = Console(width=160)


def time_interleaved(cases: dict[str, Callable[[], object]], repeats: int, inner: int = 1,
                     warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each case. The cases take turns within every repeat, so a
    change in the machine's load hits all of them alike; each timing averages ``inner`` calls."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(values) for name, values in samples.items()}


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"machine: {os.cpu_count()} CPUs, load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def show(table: Table, prog: str, argv: list[str], notes: Sequence[str] = ()) -> None:
    """Print a result table, notes, the load and the command that reproduces it."""
    console.print(table)
    for note in notes:
        console.print(note)
    console.print(load_line())
    console.print(f"reproduce: nice {prog}{' ' + shlex.join(argv) if argv else ''}", highlight=False)


def fail(message: str) -> NoReturn:
    """Bad input to a benchmark script: the message on stderr, exit status 2, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
