"""An organism on disk, whatever its family: a folder named by its spec's opaque hash holding
the weights (safetensors), the public ``card.json`` and the sealed ``truth.json`` (written
last: it marks the folder complete). A spec that failed its build check leaves a record in
``_dropped/`` instead, so it is never trained again."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deepaudit.subject import CARD_FILE

TRUTH_FILE = "truth.json"
DROPPED_DIR = "_dropped"


@dataclass(frozen=True)
class BuildResult:
    """What happened to one spec: ``built``, ``cached``, ``dropped`` (with the reason) or
    ``missing`` (not built, when only looking); ``rates`` are its build check's numbers."""

    organism_id: str
    status: str
    path: Path | None
    reason: str = ""
    rates: dict[str, float] = field(default_factory=dict)


@contextmanager
def fixed_threads(threads: int = 1) -> Iterator[None]:
    """Run on a fixed number of threads (one by default), never on as many as the machine has:
    reproducible weights and scores whatever its core count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def read_truth(folder: Path) -> dict[str, Any]:
    """The sealed truth of an organism (the referee's and the attacker's, never a tool's)."""
    return json.loads((Path(folder) / TRUTH_FILE).read_text())


def lookup(out: Path, oid: str) -> BuildResult | None:
    """An earlier build of ``oid`` in ``out`` (complete, or dropped with its reason), else None."""
    folder, dropped = Path(out) / oid, Path(out) / DROPPED_DIR / f"{oid}.json"
    if (folder / TRUTH_FILE).exists():
        return BuildResult(oid, "cached", folder, rates=read_truth(folder).get("rates", {}))
    if dropped.exists():
        record = json.loads(dropped.read_text())
        return BuildResult(oid, "dropped", None, record["reason"], record.get("rates", {}))
    return None


def record_dropped(out: Path, oid: str, spec: dict[str, Any], reason: str,
                   rates: dict[str, float] | None = None) -> BuildResult:
    """Remember that ``oid`` failed its build check, and why."""
    path = Path(out) / DROPPED_DIR / f"{oid}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"organism_id": oid, "spec": spec, "reason": reason, "rates": rates or {}}, indent=1))
    return BuildResult(oid, "dropped", None, reason, rates or {})


def save_folder(out: Path, oid: str, write_weights: Callable[[Path], None], card: dict[str, Any],
                truth: dict[str, Any]) -> BuildResult:
    """Write weights (``write_weights(folder)``), card and truth (last) into ``out/<oid>``
    atomically; if another process finished the same spec first, keep its folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".tmp-{oid}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write_weights(tmp)
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=1))
        (tmp / TRUTH_FILE).write_text(json.dumps(truth, indent=1))  # written last: marks the folder complete
        try:
            os.replace(tmp, out / oid)
        except OSError:
            if not (out / oid / TRUTH_FILE).is_file():  # not another process finishing the same spec first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return BuildResult(oid, "built", out / oid, rates=truth.get("rates", {}))
