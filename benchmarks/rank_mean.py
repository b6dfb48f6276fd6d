"""Would two detectors do better together? Their stored answers on a draw, joined by organism: the
detect AUROC of each, of the mean of their ranks (an unsupervised combination that needs no
calibration, so a score such as ABS's REASR can join a probability), and the paired difference
between the combination and the better single tool (bootstrap 95% CI over organisms), overall and
by card (data set and architecture).

How ABS was checked as a part of the verdict (docs/vision.md), with each tool's store:

    python benchmarks/rank_mean.py --suite standard --seed 1 --tool nc_contrast --tool abs \\
        --store NC_STORE --store ABS_STORE

``--store`` may be given several times: each tool's answers are read from every store that holds
the draw (the first answer of an organism kept); ``--param TOOL.NAME=VALUE`` reads a tool's answers
at other parameters than its defaults."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table
from scipy.stats import rankdata

from deepaudit.bench.common import draw_answers, fail, name_value, show
from deepaudit.metrics import auroc_score, bootstrap_ci
from deepaudit.paths import default_store_path


def tool_params(items: list[str], tools: list[str]) -> dict[str, dict[str, Any]]:
    """``TOOL.NAME=VALUE`` items -> per-tool parameters."""
    params: dict[str, dict[str, Any]] = {tool: {} for tool in tools}
    for item in items:
        key, value = name_value(item, "--param", "abs.logit_weight=0")
        tool, _, name = key.partition(".")
        if tool not in params or not name:
            fail(f"--param takes TOOL.NAME=VALUE with TOOL one of {tools}, got {item!r}")
        params[tool][name] = value
    return params


def rows(planted: np.ndarray, cards: np.ndarray, scores: list[np.ndarray]
         ) -> list[tuple[str, int, int, list[float], float, tuple[float, float]]]:
    """For all organisms, then each card with both labels: its name, clean and planted counts, each
    tool's AUROC, the mean rank's AUROC, and the bootstrap 95% CI of the mean rank's AUROC less
    the better tool's (ranks over all organisms)."""
    combined = rankdata(scores[0]) + rankdata(scores[1])
    out = []
    for name, keep in [("all", np.ones(len(planted), bool)), *((card, cards == card) for card in sorted(set(cards)))]:
        y, parts, both = planted[keep], [s[keep] for s in scores], combined[keep]
        if len(set(y)) < 2:
            continue
        singles = [auroc_score(y, s) for s in parts]
        better = parts[int(np.argmax(singles))]
        ci = bootstrap_ci(lambda idx, y=y, both=both, better=better: auroc_score(y[idx], both[idx])
                          - auroc_score(y[idx], better[idx]), len(y), 0, need_both=y)
        out.append((name, int((y == 0).sum()), int(y.sum()), singles, auroc_score(y, both), ci))
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="standard")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tool", action="append", required=True, help="a detector (give exactly two)")
    parser.add_argument("--store", action="append", type=Path, help="a results store (repeat; default: the default store)")
    parser.add_argument("--param", action="append", default=[], help="TOOL.NAME=VALUE (repeat)")
    args = parser.parse_args(argv)
    if len(args.tool) != 2 or args.tool[0] == args.tool[1]:
        fail(f"give two different --tool, got {args.tool}")
    stores = args.store or [default_store_path()]
    params = tool_params(args.param, args.tool)
    answers = [draw_answers(stores, args.suite, args.seed, tool, None, params[tool] or None) for tool in args.tool]
    ids = sorted(set(answers[0]) & set(answers[1]))
    if not ids:
        fail(f"no organism of suite {args.suite!r} seed {args.seed} has answers of both {args.tool} in {stores}")
    labels = [answers[0][i]["labels"] for i in ids]
    planted = np.array([int(label["planted"]) for label in labels])
    cards = np.array([f"{label.get('dataset')},{label.get('arch')}" for label in labels])
    scores = [np.array([answers[k][i]["answer"]["p_planted"] for i in ids]) for k in range(2)]
    table = Table(title=f"{args.suite} seed {args.seed}: detect AUROC of two tools and of the mean of their ranks")
    for column in ("organisms", "clean / planted", *args.tool, "mean rank", "mean rank - better (95% CI)"):
        table.add_column(column)
    for name, clean, found, singles, both, (low, high) in rows(planted, cards, scores):
        table.add_row(name, f"{clean} / {found}", *(f"{a:.3f}" for a in singles), f"{both:.3f}",
                      f"{both - max(singles):+.3f} [{low:+.3f}, {high:+.3f}]")
    show(table, "python benchmarks/rank_mean.py", argv)


if __name__ == "__main__":
    main(sys.argv[1:])
