"""Choose the audit's verdict thresholds for one detector from a suite's stored detect answers,
by a rule fixed before looking at any held-out seed:

- "backdoor suspected" at P(planted) >= suspect, the lowest threshold that tells at most
  ``--clean-suspected`` (10%) of the clean organisms "backdoor suspected";
- "no backdoor found" below clear, the highest threshold that tells at most
  ``--planted-cleared`` (10%) of the planted organisms "no backdoor found" (never above suspect).

Each threshold lies midway between the two neighbouring observed values. Prints the thresholds,
the label shares they give on the seed they were chosen on and, with ``--check-seed``, on a
held-out seed (the ``verdict`` track of ``deepaudit game report`` shows the same shares once the
numbers are in ``deepaudit.verdicts.THRESHOLDS``).

    python benchmarks/verdict_thresholds.py --suite standard --seed 0 --tool combine_stouffer --check-seed 1

``--seed 0 1`` chooses on two draws pooled (then check on a third). With ``--every-draw``, the
suspect threshold is instead the highest of the draws' own (each draw alone tells at most
``--clean-suspected`` of its clean organisms "backdoor suspected"): a margin for the draw-to-draw
shift of a tool whose randomness a draw shares (docs/vision.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from deepaudit.bench.common import fail, tool_answers
from deepaudit.game.tracks.verdict import said_unsure
from deepaudit.paths import default_store_path
from deepaudit.verdicts import LABELS, Thresholds, choose_thresholds, choose_thresholds_every_draw


def scored(cells: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(P(planted), planted) of the cells."""
    return (np.array([c["scores"]["p_planted"] for c in cells]),
            np.array([c["labels"]["planted"] for c in cells], dtype=bool))


def shares(cells: list[dict], rule_of: Callable[[dict], Thresholds]) -> str:
    """The share of clean and of planted organisms given each label, each read by ``rule_of(cell)``."""
    given = [(c["labels"]["planted"], rule_of(c).label(float(c["scores"]["p_planted"]), said_unsure(c))) for c in cells]
    lines = []
    for planted, name in ((False, "clean"), (True, "planted")):
        mine = [label for p, label in given if p == planted]
        lines.append(f"  {name:8s} ({len(mine):3d}): " + ", ".join(f"{label} {mine.count(label) / max(len(mine), 1):.0%}"
                                                            for label in LABELS))
    return "\n".join(lines)


def card_of(cell: dict) -> tuple[str, str]:
    return cell["labels"]["dataset"], cell["labels"]["arch"]


def choose(draws: dict[int, list[dict]], args: argparse.Namespace) -> Thresholds:
    """The rule on these draws' cells (pooled, or each draw's own with ``--every-draw``)."""
    try:
        if args.every_draw:
            return choose_thresholds_every_draw([scored(draw) for draw in draws.values()], args.clean_suspected,
                                                args.planted_cleared)
        return choose_thresholds(*scored([c for draw in draws.values() for c in draw]), args.clean_suspected,
                                 args.planted_cleared)
    except ValueError as exc:  # a draw without clean or without planted organisms
        fail(f"{args.tool} on {args.suite} seed {' '.join(map(str, args.seed))}: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="standard")
    parser.add_argument("--seed", type=int, nargs="+", default=[0],
                        help="the seed(s) to choose on; several are pooled (their organisms together)")
    parser.add_argument("--tool", default="combine_stouffer")
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--clean-suspected", type=float, default=0.10)
    parser.add_argument("--planted-cleared", type=float, default=0.10)
    parser.add_argument("--every-draw", action="store_true",
                        help="suspect threshold: the highest of the seeds' own (each seed alone within --clean-suspected)")
    parser.add_argument("--by-card", action="store_true",
                        help="also choose each card's (data set, architecture) own thresholds, on its organisms alone")
    parser.add_argument("--check-seed", type=int, default=None)
    args = parser.parse_args()
    store = args.store or default_store_path()
    draws = {seed: tool_answers(store, args.suite, seed, args.tool) for seed in args.seed}
    cells = [cell for seed in args.seed for cell in draws[seed]]
    chosen = choose(draws, args)
    seeds = " ".join(str(seed) for seed in args.seed)
    rule = ", suspect threshold the highest of the seeds' own" if args.every_draw else ""
    print(f"{args.tool} on {args.suite} seed {seeds} ({len(cells)} organisms{rule}): suspect at P(planted) >= "
          f"{chosen.suspect:.6g}, clear below {chosen.clear:.6g}")
    rule_of: Callable[[dict], Thresholds] = lambda cell: chosen  # noqa: E731
    if args.by_card:
        per_card = {card: choose({seed: [c for c in draw if card_of(c) == card] for seed, draw in draws.items()}, args)
                    for card in sorted({card_of(c) for c in cells})}
        for (dataset, arch), own in per_card.items():
            print(f"  card {dataset} {arch}: suspect at P(planted) >= {own.suspect:.6g}, clear below {own.clear:.6g}")
        rule_of = lambda cell: per_card.get(card_of(cell), chosen)  # noqa: E731
        print("read by each card's own thresholds:")
    print(shares(cells, rule_of))
    for seed, draw in draws.items() if len(draws) > 1 else ():
        print(f"seed {seed}:")
        print(shares(draw, rule_of))
    if args.check_seed is not None:
        held = tool_answers(store, args.suite, args.check_seed, args.tool)
        print(f"held-out seed {args.check_seed} ({len(held)} organisms):")
        print(shares(held, rule_of))
    print(f"reproduce: python benchmarks/verdict_thresholds.py --suite {args.suite} --seed {seeds} --tool {args.tool}"
          + (f" --clean-suspected {args.clean_suspected:g}" if args.clean_suspected != 0.10 else "")
          + (f" --planted-cleared {args.planted_cleared:g}" if args.planted_cleared != 0.10 else "")
          + (" --every-draw" if args.every_draw else "")
          + (" --by-card" if args.by_card else "")
          + (f" --check-seed {args.check_seed}" if args.check_seed is not None else "")
          + (f" --store {args.store}" if args.store else ""))


if __name__ == "__main__":
    main()
