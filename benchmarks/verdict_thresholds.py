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
from pathlib import Path

import numpy as np

from deepaudit.bench.common import fail, tool_answers
from deepaudit.game.tracks.verdict import verdict_label
from deepaudit.paths import default_store_path
from deepaudit.verdicts import LABELS, THRESHOLDS, Thresholds, choose_thresholds, choose_thresholds_every_draw


def scored(cells: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(P(planted), planted) of the cells."""
    return (np.array([c["scores"]["p_planted"] for c in cells]),
            np.array([c["labels"]["planted"] for c in cells], dtype=bool))


def shares(cells: list[dict], thresholds: Thresholds, family: str) -> str:
    saved = THRESHOLDS.get(family)
    THRESHOLDS[family] = thresholds
    try:
        given = [(c["labels"]["planted"], verdict_label(c)) for c in cells]
    finally:
        THRESHOLDS.pop(family) if saved is None else THRESHOLDS.__setitem__(family, saved)
    lines = []
    for planted, name in ((False, "clean"), (True, "planted")):
        mine = [label for p, label in given if p == planted]
        lines.append(f"  {name:8s} ({len(mine):3d}): " + ", ".join(f"{label} {mine.count(label) / max(len(mine), 1):.0%}"
                                                            for label in LABELS))
    return "\n".join(lines)


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
    parser.add_argument("--check-seed", type=int, default=None)
    args = parser.parse_args()
    store = args.store or default_store_path()
    draws = {seed: tool_answers(store, args.suite, seed, args.tool) for seed in args.seed}
    cells = [cell for seed in args.seed for cell in draws[seed]]
    family = cells[0]["labels"]["family"]
    try:
        if args.every_draw:
            chosen = choose_thresholds_every_draw([scored(draw) for draw in draws.values()], args.clean_suspected,
                                                  args.planted_cleared)
        else:
            chosen = choose_thresholds(*scored(cells), args.clean_suspected, args.planted_cleared)
    except ValueError as exc:  # a draw without clean or without planted organisms
        fail(f"{args.tool} on {args.suite} seed {' '.join(map(str, args.seed))}: {exc}")
    seeds = " ".join(str(seed) for seed in args.seed)
    rule = ", suspect threshold the highest of the seeds' own" if args.every_draw else ""
    print(f"{args.tool} on {args.suite} seed {seeds} ({len(cells)} organisms{rule}): suspect at P(planted) >= "
          f"{chosen.suspect:.6g}, clear below {chosen.clear:.6g}")
    print(shares(cells, chosen, family))
    for seed, draw in draws.items() if len(draws) > 1 else ():
        print(f"seed {seed}:")
        print(shares(draw, chosen, family))
    if args.check_seed is not None:
        held = tool_answers(store, args.suite, args.check_seed, args.tool)
        print(f"held-out seed {args.check_seed} ({len(held)} organisms):")
        print(shares(held, chosen, family))
    print(f"reproduce: python benchmarks/verdict_thresholds.py --suite {args.suite} --seed {seeds} --tool {args.tool}"
          + (f" --clean-suspected {args.clean_suspected:g}" if args.clean_suspected != 0.10 else "")
          + (f" --planted-cleared {args.planted_cleared:g}" if args.planted_cleared != 0.10 else "")
          + (" --every-draw" if args.every_draw else "")
          + (f" --check-seed {args.check_seed}" if args.check_seed is not None else "")
          + (f" --store {args.store}" if args.store else ""))


if __name__ == "__main__":
    main()
