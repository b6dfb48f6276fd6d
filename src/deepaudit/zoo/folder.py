"""An organism on disk, whatever its family: a public folder named by its spec's opaque hash
holding the weights (safetensors) and the public ``card.json``, and apart from it the sealed
truth, ``_sealed/<id>.json`` beside the folders (written last: it marks the organism complete).
The public folder can be handed out alone (``deepaudit zoo export``). A spec that failed its
build check leaves a record in ``_dropped/`` instead, so it is never trained again. Zoos built
before the truth moved out (``<id>/truth.json``) are moved on their first lookup."""

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

TRUTH_FILE = "truth.json"  # where older zoos kept the truth, inside the public folder
SEALED_DIR = "_sealed"
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


def truth_path(folder: Path) -> Path:
    """Where the sealed truth of the organism in ``folder`` lives: outside the public folder."""
    folder = Path(folder)
    return folder.parent / SEALED_DIR / f"{folder.name}.json"


def read_truth(folder: Path) -> dict[str, Any]:
    """The sealed truth of an organism (the referee's and the attacker's, never a tool's)."""
    sealed, legacy = truth_path(folder), Path(folder) / TRUTH_FILE
    return json.loads((sealed if sealed.is_file() or not legacy.is_file() else legacy).read_text())


def public_files(folder: Path) -> list[Path]:
    """Every file of an organism's public folder (a truth left inside by an older zoo excluded)."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != TRUTH_FILE)


def _move_legacy_truth(folder: Path) -> None:
    legacy = folder / TRUTH_FILE
    if legacy.is_file():
        truth_path(folder).parent.mkdir(parents=True, exist_ok=True)
        os.replace(legacy, truth_path(folder))


def lookup(out: Path, oid: str) -> BuildResult | None:
    """An earlier build of ``oid`` in ``out`` (complete, or dropped with its reason), else None."""
    folder, dropped = Path(out) / oid, Path(out) / DROPPED_DIR / f"{oid}.json"
    _move_legacy_truth(folder)
    if truth_path(folder).is_file() and folder.is_dir():
        return BuildResult(oid, "cached", folder, rates=read_truth(folder).get("rates", {}))
    if dropped.exists():
        record = json.loads(dropped.read_text())
        return BuildResult(oid, "dropped", None, record["reason"], record.get("rates", {}))
    return None


def record_dropped(out: Path, oid: str, spec: dict[str, Any], reason: str,
                   rates: dict[str, float] | None = None, build_seconds: float | None = None) -> BuildResult:
    """Remember that ``oid`` failed its build check, and why (and what building it cost, if given:
    a dropped organism's build counts in a suite's build time)."""
    path = Path(out) / DROPPED_DIR / f"{oid}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    cost = {"build_seconds": build_seconds} if build_seconds is not None else {}
    path.write_text(json.dumps({"organism_id": oid, "spec": spec, "reason": reason, "rates": rates or {}, **cost},
                               indent=1))
    return BuildResult(oid, "dropped", None, reason, rates or {})


def save_folder(out: Path, oid: str, write_weights: Callable[[Path], None], card: dict[str, Any],
                truth: dict[str, Any]) -> BuildResult:
    """Write weights (``write_weights(folder)``) and card into ``out/<oid>`` atomically, then the
    sealed truth (last); if another process finished the same spec first, keep its organism."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folder, sealed = out / oid, truth_path(out / oid)
    tmp = out / f".tmp-{oid}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write_weights(tmp)
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=1))
        if folder.is_dir() and not sealed.is_file():  # a build interrupted before its truth: start again
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not sealed.is_file():  # not another process finishing the same spec first
                raise
            return BuildResult(oid, "cached", folder, rates=read_truth(folder).get("rates", {}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sealed.parent.mkdir(parents=True, exist_ok=True)
    partial = sealed.with_suffix(f".tmp-{os.getpid()}")
    partial.write_text(json.dumps(truth, indent=1))
    os.replace(partial, sealed)  # written last: marks the organism complete
    return BuildResult(oid, "built", folder, rates=truth.get("rates", {}))
