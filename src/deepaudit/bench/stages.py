"""Wall time of a suite split by stage, read from an existing results store rather than by
re-running the suite: each tool's seconds (the store's ``wall_s`` per organism: the tool's own
work, not loading or scoring), each shared finding's seconds (once per organism, whichever
tools used it), the span between the first and last finished cell, and the scoring stage (the
leaderboard with its bootstrap CIs and skyline), timed now from the store. ``--build`` also
times building the suite's zoo from scratch into a temporary folder."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from rich.table import Table

from deepaudit.bench.common import show
from deepaudit.game.leaderboard import leaderboard
from deepaudit.game.store import read_cells
from deepaudit.paths import default_store_path


def tool_seconds(store: Path, suite: str, seed: int, budget: int | None) -> tuple[dict[str, list[float]], float]:
    """Per tool (and per shared finding, as ``finding: name``), the wall seconds on each organism;
    and the span of the cells' finishing times."""
    cells = read_cells(store, suite, seed, budget)
    per_tool: dict[str, dict[str, float]] = defaultdict(dict)
    for cell in cells:  # a tool's track cells of one organism share its cost: count it once
        per_tool[cell["tool"]][cell["organism_id"]] = cell["wall_s"] or 0.0
        for name, cost in (cell["shared"] or {}).items():
            per_tool[f"finding: {name}"][cell["organism_id"]] = cost["wall_s"]
    finished = [c["finished_at"] for c in cells]
    return {tool: list(by_organism.values()) for tool, by_organism in per_tool.items()}, max(finished) - min(finished)


def main(argv: list[str] | None = None, prog: str = "python benchmarks/suite_stages.py") -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=None, help="results store (default: $DEEPAUDIT_HOME/results.sqlite)")
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--build", action="store_true", help="also time building the zoo from scratch")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for --build")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    store = args.store or default_store_path()
    per_tool, span = tool_seconds(store, args.suite, args.seed, args.budget)
    total = sum(sum(v) for v in per_tool.values())
    table = Table(title=f"suite '{args.suite}' seed {args.seed} by stage, from {store}")
    for column in ("stage", "organisms", "seconds", "mean s / organism", "share of tool time"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    if args.build:
        from deepaudit.zoo import build_suite

        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            manifest = build_suite(args.suite, args.seed, Path(folder), jobs=args.jobs)
            built = time.perf_counter() - start
        n = len(manifest["organisms"]) + len(manifest["dropped"])
        table.add_row(f"build zoo (now, --jobs {args.jobs})", str(n), f"{built:.1f}", f"{built / n:.2f}", "")
    for tool, seconds in sorted(per_tool.items(), key=lambda kv: -sum(kv[1])):
        label = tool if tool.startswith("finding") else f"tool: {tool}"
        table.add_row(label, str(len(seconds)), f"{sum(seconds):.1f}", f"{sum(seconds) / len(seconds):.2f}",
                      f"{sum(seconds) / total:.1%}")
    table.add_row("all tools and findings", "", f"{total:.1f}", "", "100%")
    table.add_row("first to last finished cell (elapsed)", "", f"{span:.1f}", "", "")
    start = time.perf_counter()
    leaderboard(store, args.suite, args.seed, budget=args.budget)
    table.add_row("scoring: leaderboard, CIs, skyline (now)", "", f"{time.perf_counter() - start:.1f}", "", "")
    show(table, prog, argv, ["tool seconds were measured when the store was filled (the load then is not known "
                             "here); 'now' rows were measured in this run"])


if __name__ == "__main__":
    main()
