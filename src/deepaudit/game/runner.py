"""The game runner: build a suite's zoo, run every (organism, tool) cell that the store does
not have yet, in this process, a local process pool or on Ray (see deepaudit.executors), and
commit each cell as it finishes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from deepaudit.executors import make_executor
from deepaudit.game.referee import run_cell
from deepaudit.game.store import CellKey, Store
from deepaudit.paths import default_store_path, default_zoo_dir
from deepaudit.tools import TOOLS
from deepaudit.zoo import build_suite

DEFAULT_BUDGET = 256


@dataclass
class RunSummary:
    """What a run did: cells run now, cells found already done, and failed cells with errors."""

    suite: str
    seed: int
    organisms: int
    ran: int = 0
    skipped: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)


def _cell(folder: Path, tool: str, budget: int, seed: int) -> dict:
    return run_cell(folder, tool, budget, seed)


def run_game(suite: str = "quick", seed: int = 0, tools: Sequence[str] | None = None,
             store: Path | None = None, zoo_dir: Path | None = None, budget: int = DEFAULT_BUDGET,
             jobs: int = 1, on_build: Callable | None = None,
             on_cell: Callable[[CellKey, str], None] | None = None,
             on_plan: Callable[[int, int], None] | None = None, executor: str = "local",
             ray_address: str | None = None) -> RunSummary:
    """Build the suite (cached), then run and score every missing cell. Safe to interrupt:
    finished cells are already in the store, and a rerun resumes with the rest. ``executor``
    is ``local`` (``jobs`` processes) or ``ray`` (at ``ray_address``, else a local Ray)."""
    tools = list(tools or TOOLS)
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        raise ValueError(f"unknown tools {unknown}; registered: {sorted(TOOLS)}")
    if budget <= 0:
        raise ValueError(f"the clean data budget must be positive, got {budget}")
    zoo_dir = Path(zoo_dir) if zoo_dir else default_zoo_dir()
    pool = make_executor(executor, jobs, ray_address)
    manifest = build_suite(suite, seed, zoo_dir, jobs=jobs, progress=on_build, executor=pool)
    results = Store(store or default_store_path())
    summary = RunSummary(manifest["suite"], seed, len(manifest["organisms"]), dropped=manifest["dropped"])
    done = results.done(manifest["suite"], seed, budget)
    todo = [CellKey(manifest["suite"], seed, oid, tool, budget)
            for oid in manifest["organisms"] for tool in tools if (oid, tool) not in done]
    summary.skipped = len(manifest["organisms"]) * len(tools) - len(todo)
    if on_plan:
        on_plan(len(todo), summary.skipped)

    def record(key: CellKey, outcome: dict | None, error: BaseException | None) -> None:
        if error is None:
            results.put(key, "done", outcome["answer"], outcome["scores"], wall_s=outcome["wall_s"],
                        forward_passes=outcome["forward_passes"])
            summary.ran += 1
        else:
            message = f"{type(error).__name__}: {error}"
            results.put(key, "error", error=message)
            summary.failed.append((key.organism_id, key.tool, message))
        if on_cell:
            on_cell(key, "done" if error is None else "error")

    try:  # a broken organism or tool is recorded as an error and does not stop the game
        with closing(pool.run(_cell, [(zoo_dir / k.organism_id, k.tool, budget, seed) for k in todo])) as outcomes:
            for i, outcome, error in outcomes:
                record(todo[i], outcome, error)
    finally:
        results.close()
    return summary
