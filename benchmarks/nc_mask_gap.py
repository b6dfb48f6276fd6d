"""Neural Cleanse's smallest-mask gap against its MAD rule, from a suite's stored answers.

Neural Cleanse (Wang et al., S&P 2019) flags a model when its smallest class mask is an outlier
by the MAD index: the gap between the median and the smallest class's mask norm, divided by the
spread of the model's own classes. The *smallest-mask gap* leaves out that division (log of the
median mask norm over the smallest). This prints the detect AUROC of both, over all organisms
and by data set, with bootstrap 95% intervals, from the masks ``neural_cleanse`` already stored
(its ``mask_l1`` evidence): no model is read and nothing is retrained. Issue 15 names the gap as
a lead chosen after seeing the quick suite's seed 0; run it on other seeds to check it.

    deepaudit game run --suite quick --seed 1 --tools neural_cleanse
    python benchmarks/nc_mask_gap.py --suite quick --seed 1
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepaudit.bench.common import fail
from deepaudit.game.store import StoreError, read_cells
from deepaudit.metrics import auroc_with_ci
from deepaudit.paths import default_store_path
from deepaudit.tools.nc_reference import relative_mask_sizes


def mask_gap(mask_l1: list[float]) -> float:
    """How far (log scale) the smallest class's mask norm lies below the median class's, as
    ``nc_reference`` measures relative mask sizes."""
    return float(-relative_mask_sizes(torch.tensor(mask_l1)[:, None]).min())


def scored(cells: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per organism: planted or not, its data set, the MAD rule's P(planted) and the gap."""
    rows = [c for c in cells if c["tool"] == "neural_cleanse" and c["track"] == "detect" and c["status"] == "done"
            and "mask_l1" in ((c.get("answer") or {}).get("evidence") or {})]
    if not rows:
        fail("no neural_cleanse detect answers with their masks in the store for this suite and seed; "
             "run `deepaudit game run --tools neural_cleanse` first")
    planted = np.array([bool(c["labels"]["planted"]) for c in rows])
    dataset = np.array([str(c["labels"].get("dataset")) for c in rows])
    mad = np.array([float(c["answer"]["p_planted"]) for c in rows])
    gap = np.array([mask_gap(c["answer"]["evidence"]["mask_l1"]) for c in rows])
    return planted, dataset, mad, gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", type=Path, default=None)
    args = parser.parse_args()
    try:
        cells = read_cells(args.store or default_store_path(), args.suite, args.seed)
    except StoreError as exc:
        fail(str(exc))
    planted, dataset, mad, gap = scored(cells)
    print(f"suite {args.suite!r} seed {args.seed}: detect AUROC [bootstrap 95% CI]")
    for name, keep in [("all", np.ones(len(planted), bool))] + [(d, dataset == d) for d in sorted(set(dataset))]:
        if len(set(planted[keep])) < 2:
            print(f"  {name:8s} ({keep.sum():3d}): needs planted and clean organisms")
            continue
        both = [auroc_with_ci(planted[keep], score[keep]) for score in (mad, gap)]
        print(f"  {name:8s} ({keep.sum():3d}): " + ", ".join(
            f"{label} {m['value']:.2f} [{m['ci_low']:.2f}, {m['ci_high']:.2f}]"
            for label, m in zip(("MAD rule", "smallest-mask gap"), both)))
    print(f"reproduce: python benchmarks/nc_mask_gap.py --suite {args.suite} --seed {args.seed}")


if __name__ == "__main__":
    main()
