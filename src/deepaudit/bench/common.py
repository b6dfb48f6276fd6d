"""What every benchmark shares: interleaved timing with medians, the load line, the command line,
the exit on bad input, a tool's stored answers."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from deepaudit.game.store import StoreError, read_cells
from deepaudit.tools.registry import RegistryError, tool_spec

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


def detect_answers(store: Path, suite: str, seed: int, tool: str, version: int | None = None,
                   params: dict[str, Any] | None = None, without: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The tool's detect cells of a suite and seed in one store, at its default parameters (with
    ``params`` in place of today's defaults where an earlier version had others, and none of the
    parameters named in ``without``, which it did not have) and its current version or ``version``
    (a store may also hold other versions' or settings' answers); raises ``RegistryError`` for an
    unknown tool or parameter and ``StoreError`` for a store without the draw."""
    spec = tool_spec(tool)
    if version is not None:
        spec = dataclasses.replace(spec, version=version)
    settings = spec.params(**(params or {}))
    if unknown := sorted(set(without) - set(settings)):
        raise RegistryError(f"tool {tool!r} has no parameters {unknown}; it takes {sorted(settings)}")
    default = spec.digest({name: value for name, value in settings.items() if name not in without})
    return [c for c in read_cells(store, suite, seed) if c["track"] == "detect" and c["tool"] == tool
            and c["params"] == default]


def name_value(item: str, option: str, example: str) -> tuple[str, Any]:
    """``NAME=VALUE`` given to ``option`` (the value as JSON, else a string) -> (name, value)."""
    name, _, raw = item.partition("=")
    if not (name and raw):
        fail(f"{option} {item!r}: write it as name=value, e.g. {example}")
    try:
        return name, json.loads(raw)
    except json.JSONDecodeError:
        return name, raw


def draw_answers(stores: list[Path], suite: str, seed: int, tool: str, version: int | None,
                 params: dict[str, Any] | None = None, without: Sequence[str] = ()) -> dict[str, dict]:
    """Organism id -> detect cell, from every store that holds the draw (the first store wins)."""
    found: dict[str, dict] = {}
    for store in stores:
        try:
            cells = detect_answers(store, suite, seed, tool, version, params, without)
        except StoreError:
            continue
        except RegistryError as exc:
            fail(str(exc))
        for cell in cells:
            found.setdefault(cell["organism_id"], cell)
    return found


def tool_answers(store: Path, suite: str, seed: int, tool: str, version: int | None = None) -> list[dict[str, Any]]:
    """``detect_answers``, with a clear exit (status 2) when there are none."""
    try:
        cells = detect_answers(store, suite, seed, tool, version)
    except (RegistryError, StoreError) as exc:
        fail(str(exc))
    if not cells:
        fail(f"no detect answers of {tool!r} (version {version or tool_spec(tool).version}, default parameters) "
             f"for suite {suite!r} seed {seed} in {store}")
    return cells
