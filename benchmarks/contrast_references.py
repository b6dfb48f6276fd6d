"""`nc_contrast` one reference at a time, by card, from a suite's stored answers.

`nc_contrast` (Neural Cleanse contrasted with clean references) averages each class's log mask size
over two references, the model's re-headed copy and a student distilled from it, and scores the log
gap of the smallest class below the median. Its answers keep every reference's class scores
(``log_mask_size`` evidence), so the gap each reference alone would give can be read back without
running a model. Per card (data set and architecture) and reference this prints the clean models'
median gap, the detect AUROC within the card, and the class that is smallest most often on the
clean models: a reference that copies one class of the task worse than the others finds that
class's trigger small in many clean models of the card (docs/vision.md).

    deepaudit game run --suite standard --seed 5 --tools nc_contrast
    python benchmarks/contrast_references.py --suite standard --seed 5
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from deepaudit.bench.common import fail, show, tool_answers
from deepaudit.metrics import auroc_with_ci
from deepaudit.paths import default_store_path
from deepaudit.tools.neural_cleanse import log_gap

MEAN = "mean (nc_contrast)"


def reference_scores(cell: dict[str, Any]) -> dict[str, np.ndarray]:
    """Each reference's class log sizes (first run only) and their mean, as the tool scores."""
    sizes = cell["answer"]["evidence"]["log_mask_size"]
    first = {name: np.asarray(values) for name, values in sizes.items() if "-" not in name}
    return first | {MEAN: np.mean(list(first.values()), axis=0)}


def rows(cells: list[dict[str, Any]]) -> list[tuple[str, str, int, int, float, str, str]]:
    """(card, reference, clean, planted, clean median gap, AUROC [CI] within the card, commonest
    smallest class among the clean models) per card and reference."""
    by_card: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        if "log_mask_size" in (cell.get("answer") or {}).get("evidence", {}):
            by_card.setdefault(f"{cell['labels'].get('dataset')} {cell['labels'].get('arch')}", []).append(cell)
    if not by_card:
        fail("no nc_contrast answer keeps its class scores (log_mask_size) for this suite and seed")
    out = []
    for card, mine in sorted(by_card.items()):
        planted = np.array([bool(c["labels"]["planted"]) for c in mine])
        scores = [reference_scores(c) for c in mine]
        for reference in scores[0]:
            gaps = np.array([log_gap(s[reference]) for s in scores])
            smallest = Counter(int(s[reference].argmin()) for s, p in zip(scores, planted) if not p).most_common(1)
            commonest = f"{smallest[0][0]} ({smallest[0][1]}/{(~planted).sum()})" if smallest else "-"
            if planted.all() or not planted.any():
                auroc = "needs both"
            else:
                m = auroc_with_ci(planted, gaps)
                auroc = f"{m['value']:.2f} [{m['ci_low']:.2f}, {m['ci_high']:.2f}]"
            median = float(np.median(gaps[~planted])) if (~planted).any() else float("nan")
            out.append((card, reference, int((~planted).sum()), int(planted.sum()), median, auroc, commonest))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="standard")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", type=Path, default=None)
    args = parser.parse_args()
    cells = tool_answers(args.store or default_store_path(), args.suite, args.seed, "nc_contrast")
    table = Table(title=f"nc_contrast by reference, suite {args.suite!r} seed {args.seed} (first run)")
    for column in ("card", "reference", "clean", "planted", "clean median gap", "AUROC in card [95% CI]",
                   "commonest smallest class (clean)"):
        table.add_column(column)
    for card, reference, clean, planted, median, auroc, commonest in rows(cells):
        table.add_row(card, reference, str(clean), str(planted), f"{median:.2f}", auroc, commonest)
    argv = ["--suite", args.suite, "--seed", str(args.seed)] + (["--store", str(args.store)] if args.store else [])
    show(table, "python benchmarks/contrast_references.py", argv)


if __name__ == "__main__":
    main()
