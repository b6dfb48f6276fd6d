"""The remove and localize tracks per implant: DER of every remover (x100, as BackdoorBench
reports it) per implant kind, the clean-twin check, outright failures, and every localizer's
area under the top-k ablation curve against k random units. Runs (or resumes) the game with
the removers, the localizers and Neural Cleanse (the reference for the cost ratios), then reads
the store.

    nice python benchmarks/removal.py --suite quick --jobs 2 [--store PATH] [--seed 0]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from deepaudit.game import Store, run_game
from deepaudit.paths import home
from deepaudit.tools.registry import LOCALIZERS, REMOVERS

REFERENCE = "neural_cleanse"


def implant_of(scores: dict) -> str:
    """patch / blend / warp, with the one-to-one and evasive variants kept apart."""
    label = scores["implant"]
    if scores.get("mapping") == "one_to_one":
        label += " 1-to-1"
    return label + (" evasive" if scores["evasive"] else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--store", default=None, help="default: $DEEPAUDIT_HOME/bench_removal.sqlite")
    args = parser.parse_args()
    store_path = args.store or str(home() / "bench_removal.sqlite")
    removers, localizers = [c.name for c in REMOVERS], [c.name for c in LOCALIZERS]
    summary = run_game(args.suite, args.seed, removers + localizers + [REFERENCE], store=store_path, jobs=args.jobs)
    store = Store(store_path)
    try:
        cells = list(store.cells(summary.suite, args.seed))
    finally:
        store.close()
    by_tool = defaultdict(list)
    for cell in cells:
        by_tool[cell["tool"]].append(cell)
    implants = sorted({implant_of(c["scores"]) for c in cells if c["scores"]["planted"]})
    print(f"suite {summary.suite} seed {args.seed}: {summary.organisms} organisms, "
          f"{len(summary.failed)} failed cells\n")

    print("remove: mean DER x100 per implant (organisms), then over all planted; twin check: share of "
          "organisms with nothing planted that lose <= 1 point, and their mean loss in points; "
          "fails: edits losing > 20 points (all organisms)")
    print("| remover | " + " | ".join(implants) + " | all planted | twin pass | twin loss (pt) | fails |")
    print("|---" * (len(implants) + 5) + "|")
    for name in removers:
        planted = [c["scores"] for c in by_tool[name] if c["scores"]["planted"]]
        clean = [c["scores"] for c in by_tool[name] if not c["scores"]["planted"]]
        per = []
        for implant in implants:
            values = [s["remove_der"] for s in planted if implant_of(s) == implant]
            per.append(f"{100 * np.mean(values):.1f} ({len(values)})" if values else "-")
        fails = sum(c["scores"]["remove_failed"] for c in by_tool[name])
        print(f"| {name} | " + " | ".join(per) + f" | {100 * np.mean([s['remove_der'] for s in planted]):.1f} | "
              f"{np.mean([s['remove_twin_pass'] for s in clean]):.2f} | "
              f"{100 * np.mean([s['remove_damage'] for s in clean]):.1f} | {fails}/{len(by_tool[name])} |")

    print("\nlocalize: normalised area under the ASR-drop curve over k = 1..32 (log grid) for the top-k "
          "units; in brackets the same for k random units")
    print("| localizer | " + " | ".join(implants) + " | all planted |")
    print("|---" * (len(implants) + 2) + "|")
    for name in localizers:
        planted = [c["scores"] for c in by_tool[name] if c["scores"]["planted"]]
        per = []
        for implant in implants:
            rows = [s for s in planted if implant_of(s) == implant]
            per.append(f"{np.mean([s['localize_auc'] for s in rows]):.2f} "
                       f"({np.mean([s['localize_auc_random'] for s in rows]):.2f})" if rows else "-")
        print(f"| {name} | " + " | ".join(per) + f" | {np.mean([s['localize_auc'] for s in planted]):.2f} "
              f"({np.mean([s['localize_auc_random'] for s in planted]):.2f}) |")

    reference = np.mean([c["wall_s"] for c in by_tool[REFERENCE]])
    print(f"\ncost per organism: wall seconds as a ratio to {REFERENCE}'s in this run, and examples forwarded")
    print("| tool | wall / " + REFERENCE + " | forward passes |")
    print("|---|---|---|")
    for name in removers + localizers + [REFERENCE]:
        print(f"| {name} | {np.mean([c['wall_s'] for c in by_tool[name]]) / reference:.2f} | "
              f"{np.mean([c['forward_passes'] for c in by_tool[name]]):.0f} |")
    print(f"\nreproduce: nice python benchmarks/removal.py --suite {args.suite} --seed {args.seed} --jobs {args.jobs}")


if __name__ == "__main__":
    main()
