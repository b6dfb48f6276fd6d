"""A detector's stored answers on several draws of a suite, one row per draw: detect AUROC (overall
and per slice), the share of clean and of planted organisms given each verdict label, the
expected calibration error, and CPU-seconds per organism. With ``--against VERSION``, the same tool's
answers at an earlier version are read too and each draw gets the paired AUROC difference on the
organisms both answered (bootstrap 95% CI over organisms), and the draws' mean difference (each
resample draws every draw's organisms again). Answers are keyed by their parameters, so an earlier
version whose defaults differed is read with ``--against-param NAME=VALUE`` for each of them
(``nc_contrast`` version 2: ``--against-param slope=8.0``), and one that lacked a parameter of
today's with ``--against-without NAME`` (``nc_contrast`` version 5: ``--against-without pair_steps``).

How the verdict was checked on draws built after its thresholds were chosen (docs/vision.md):

    python benchmarks/verdict_draws.py --suite standard --seed 1 3 4 8 9 10 --tool nc_contrast

``--store`` may be given several times: each draw is read from every store that holds it (the
first answer of an organism kept). The labels are read by ``deepaudit.verdicts``' thresholds, each
card's own where it has them; ``--family-only`` reads every organism by the family's, and
``--thresholds SUSPECT CLEAR`` by others (an earlier version's, say)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from deepaudit.bench.common import draw_answers, fail, name_value, show
from deepaudit.game.leaderboard import slice_cells
from deepaudit.game.tracks.verdict import said_unsure
from deepaudit.metrics import N_BOOTSTRAP, auroc_score, auroc_with_ci, calibration_error
from deepaudit.paths import default_store_path
from deepaudit.verdicts import CLEARED, SUSPECTED, Thresholds, thresholds
from deepaudit.zoo import family as family_of

Cells = list[dict[str, Any]]


def row(cells: Cells, rule_of: Callable[[dict], Thresholds], by: list[str], context: tuple[str, ...],
        slices: list[str]) -> list[str]:
    """AUROC [CI], AUROC in each slice (as the leaderboard's: its planted organisms against the
    clean ones of the same data set and architecture), the label shares, ECE and CPU-seconds per
    organism."""
    planted = np.array([c["labels"]["planted"] for c in cells], dtype=bool)
    probs = np.array([c["scores"]["p_planted"] for c in cells], dtype=float)
    auroc = auroc_with_ci(planted.astype(int), probs)
    sliced = slice_cells(cells, by, context)
    per_slice = []
    for name in slices:
        inside = sliced.get(name, [])
        labels = np.array([c["labels"]["planted"] for c in inside], dtype=int)
        per_slice.append(f"{auroc_score(labels, np.array([c['scores']['p_planted'] for c in inside])):.2f}"
                         if 0 < labels.sum() < len(labels) else "")
    given = np.array([rule_of(c).label(p, said_unsure(c)) for p, c in zip(probs, cells, strict=True)])
    share = {(group, label): float(np.mean(given[mask] == label))
             for group, mask in (("clean", ~planted), ("planted", planted)) for label in (SUSPECTED, CLEARED)}
    cpu = np.mean([c.get("cpu_s") or 0.0 for c in cells])
    return [f"{(~planted).sum()} / {planted.sum()}", f"{auroc['value']:.3f} [{auroc['ci_low']:.2f}, {auroc['ci_high']:.2f}]",
            *per_slice,
            f"{share['clean', SUSPECTED]:.1%} ({int(round(share['clean', SUSPECTED] * (~planted).sum()))})",
            f"{share['planted', SUSPECTED]:.1%}", f"{share['clean', CLEARED]:.0%}", f"{share['planted', CLEARED]:.0%}",
            f"{calibration_error(planted, probs):.2f}", f"{cpu:.1f}"]


def paired_differences(new: dict[str, dict], old: dict[str, dict], rng: np.random.Generator
                       ) -> tuple[float, np.ndarray]:
    """AUROC(new) - AUROC(old) on the organisms both answered, and its bootstrap resamples."""
    ids = sorted(set(new) & set(old))
    planted = np.array([new[i]["labels"]["planted"] for i in ids], dtype=int)
    p_new = np.array([new[i]["scores"]["p_planted"] for i in ids])
    p_old = np.array([old[i]["scores"]["p_planted"] for i in ids])
    resamples = []
    while len(resamples) < N_BOOTSTRAP:
        idx = rng.integers(0, len(ids), len(ids))
        if 0 < planted[idx].sum() < len(idx):
            resamples.append(auroc_score(planted[idx], p_new[idx]) - auroc_score(planted[idx], p_old[idx]))
    return auroc_score(planted, p_new) - auroc_score(planted, p_old), np.array(resamples)


def markdown(table: Table) -> str:
    """The rich table as a Markdown table."""
    columns = [[str(cell) for cell in column.cells] for column in table.columns]
    lines = ["| " + " | ".join(str(column.header) for column in table.columns) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cells) + " |" for cells in zip(*columns, strict=True)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="standard")
    parser.add_argument("--seed", type=int, nargs="+", required=True, help="the draws, one row each")
    parser.add_argument("--tool", default="nc_contrast")
    parser.add_argument("--store", type=Path, action="append", default=None,
                        help="a results store (repeat for several; default: the deepaudit home's)")
    parser.add_argument("--version", type=int, default=None, help="the tool's version to read (default: current)")
    parser.add_argument("--against", type=int, default=None, metavar="VERSION",
                        help="also read this earlier version and give the paired AUROC difference")
    parser.add_argument("--against-param", action="append", default=[], metavar="NAME=VALUE",
                        help="a default of the earlier version that differs from today's (repeat; value as JSON)")
    parser.add_argument("--against-without", action="append", default=[], metavar="NAME",
                        help="a parameter of today's the earlier version did not have (repeat)")
    parser.add_argument("--thresholds", type=float, nargs=2, default=None, metavar=("SUSPECT", "CLEAR"))
    parser.add_argument("--family-only", action="store_true",
                        help="read every organism by the family's thresholds, not its card's own")
    parser.add_argument("--by", default="dataset,mapping", help="the per-slice AUROC columns' keys")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for docs)")
    args = parser.parse_args()
    stores = args.store or [default_store_path()]
    earlier = dict(name_value(item, "--against-param", "slope=8.0") for item in args.against_param)
    by = args.by.split(",")
    draws = {seed: draw_answers(stores, args.suite, seed, args.tool, args.version) for seed in args.seed}
    if missing := [seed for seed, found in draws.items() if not found]:
        fail(f"no detect answers of {args.tool!r} at default parameters for {args.suite} seed(s) {missing} "
             f"in {', '.join(map(str, stores))}")
    family = next(iter(next(iter(draws.values())).values()))["labels"]["family"]
    try:
        fixed = Thresholds(*args.thresholds, "--thresholds") if args.thresholds else None
    except ValueError as exc:
        fail(str(exc))

    def rule_of(cell: dict) -> Thresholds:
        return fixed or thresholds(family, args.tool, card=None if args.family_only else cell["labels"])
    cells_of = {seed: list(found.values()) for seed, found in draws.items()}
    context = family_of(family).context
    if bad := [key for key in by if key not in family_of(family).slices]:
        fail(f"--by: {family} organisms cannot be sliced by {bad}; choose from {list(family_of(family).slices)}")
    slices = sorted({name for cells in cells_of.values() for name in slice_cells(cells, by, context)})
    read = (f"suspect >= {fixed.suspect:.4g}, clear < {fixed.clear:.4g}" if fixed else
            "the family's thresholds" if args.family_only else "deepaudit.verdicts' thresholds (a card's own where set)")
    table = Table(title=f"{args.tool} on {args.suite}: each draw; verdict at {read}")
    for header in ("seed", "clean / planted", "AUROC [95% CI]", *(f"AUROC {name}" for name in slices),
                   "clean suspected", "planted suspected", "clean cleared", "planted cleared", "ECE", "CPU s"):
        table.add_column(header, justify="right")
    for seed, cells in cells_of.items():
        table.add_row(str(seed), *row(cells, rule_of, by, context, slices))
    notes = []
    if args.against is not None:
        rng = np.random.default_rng(0)
        olds = {seed: draw_answers(stores, args.suite, seed, args.tool, args.against, earlier, args.against_without)
                for seed in args.seed}
        every = []
        for seed in args.seed:
            if not olds[seed]:
                notes.append(f"seed {seed}: no answers of version {args.against}")
                continue
            value, resamples = paired_differences(draws[seed], olds[seed], rng)
            every.append((value, resamples))
            low, high = np.percentile(resamples, [2.5, 97.5])
            notes.append(f"seed {seed}: AUROC minus version {args.against}'s {value:+.3f} [{low:+.3f}, {high:+.3f}]")
        if len(every) > 1:
            mean = np.mean([value for value, _ in every])
            low, high = np.percentile(np.mean([resamples for _, resamples in every], axis=0), [2.5, 97.5])
            notes.append(f"mean over {len(every)} draws: {mean:+.3f} [{low:+.3f}, {high:+.3f}]")
    argv = ["--suite", args.suite, "--seed", *map(str, args.seed), "--tool", args.tool]
    argv += ["--version", str(args.version)] if args.version is not None else []
    argv += ["--against", str(args.against)] if args.against is not None else []
    argv += [item for value in args.against_param for item in ("--against-param", value)]
    argv += [item for name in args.against_without for item in ("--against-without", name)]
    argv += ["--thresholds", *map(str, args.thresholds)] if args.thresholds else []
    argv += ["--family-only"] if args.family_only else []
    argv += ["--by", args.by] if args.by != "dataset,mapping" else []
    argv += [item for store in args.store or () for item in ("--store", str(store))]
    if args.markdown:
        print(markdown(table))
        table = Table(title=table.title)  # the notes, load and command below it
    show(table, "python benchmarks/verdict_draws.py", argv + (["--markdown"] if args.markdown else []), notes)


if __name__ == "__main__":
    main()
