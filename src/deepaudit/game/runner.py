"""The game runner: build a suite's zoo, run every (organism, tool) cell that the store does
not have yet, in this process or a local process pool, and commit each cell as it finishes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

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


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _cell(folder: Path, tool: str, budget: int, seed: int) -> dict:
    return run_cell(folder, tool, budget, seed)


def run_game(suite: str = "quick", seed: int = 0, tools: Sequence[str] | None = None,
             store: Path | None = None, zoo_dir: Path | None = None, budget: int = DEFAULT_BUDGET,
             jobs: int = 1, on_build: Callable | None = None,
             on_cell: Callable[[CellKey, str], None] | None = None,
             on_plan: Callable[[int, int], None] | None = None) -> RunSummary:
    """Build the suite (cached), then run and score every missing cell. Safe to interrupt:
    finished cells are already in the store, and a rerun resumes with the rest."""
    tools = list(tools or TOOLS)
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        raise ValueError(f"unknown tools {unknown}; registered: {sorted(TOOLS)}")
    if budget <= 0:
        raise ValueError(f"the clean data budget must be positive, got {budget}")
    zoo_dir = Path(zoo_dir) if zoo_dir else default_zoo_dir()
    manifest = build_suite(suite, seed, zoo_dir, jobs=jobs, progress=on_build)
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

    try:
        if jobs <= 1:
            for key in todo:
                try:
                    outcome, error = _cell(zoo_dir / key.organism_id, key.tool, budget, seed), None
                except Exception as exc:  # one broken organism or tool must not stop the game
                    outcome, error = None, exc
                record(key, outcome, error)
        else:
            with ProcessPoolExecutor(jobs, initializer=_worker_init) as pool:
                pending = {pool.submit(_cell, zoo_dir / k.organism_id, k.tool, budget, seed): k for k in todo}
                try:
                    while pending:
                        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                        for future in finished:
                            key = pending.pop(future)
                            record(key, future.result() if future.exception() is None else None, future.exception())
                finally:
                    for future in pending:
                        future.cancel()
    finally:
        results.close()
    return summary
