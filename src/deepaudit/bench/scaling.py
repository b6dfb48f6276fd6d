"""How audit cost grows: wall time and peak memory of one audit (Neural Cleanse + Mahalanobis,
the game's default settings) on digits MLPs of growing width and depth, and of auditing a
growing number of organisms one after another. Each configuration runs in a fresh process,
so its peak resident memory (getrusage) is its own; times are ratios to the smallest
configuration of the same sweep, measured in the same run."""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor

import torch
from rich.table import Table
from torch import nn

from deepaudit.bench.common import show
from deepaudit.data import load_dataset
from deepaudit.subject import Subject
from deepaudit.tools import make_tool

AUDIT_TOOLS = ("neural_cleanse", "mahalanobis")


class DeepMLP(nn.Module):
    """The zoo's MLP generalised to ``depth`` hidden ReLU layers of ``width`` units, named like it."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int, depth: int):
        super().__init__()
        self.flatten = nn.Flatten()
        size = 1
        for dim in input_shape:
            size *= dim
        for i in range(1, depth + 1):
            setattr(self, f"fc{i}", nn.Linear(size if i == 1 else width, width))
            setattr(self, f"act{i}", nn.ReLU())
        self.depth = depth
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.flatten(x)
        for i in range(1, self.depth + 1):
            h = getattr(self, f"act{i}")(getattr(self, f"fc{i}")(h))
        return self.head(h)


def subject(width: int, depth: int, seed: int, budget: int = 256) -> Subject:
    """A digits subject of this size with random weights (the cost of these tools does not
    depend on what the weights learnt: Neural Cleanse runs a fixed number of steps)."""
    data = load_dataset("digits")
    torch.manual_seed(seed)
    model = DeepMLP(data.input_shape, data.num_classes, width, depth)
    x, y = data.split("audit")
    card = {"arch": "deep_mlp", "dataset": "digits", "input_shape": list(data.input_shape),
            "num_classes": data.num_classes, "value_range": list(data.value_range), "feature_layer": f"act{depth}"}
    return Subject(model=model, card=card, clean_x=x[:budget], clean_y=y[:budget])


def audit_cost(width: int, depth: int, organisms: int) -> tuple[float, float]:
    """Seconds and extra peak resident MiB to audit ``organisms`` subjects of one size, in this process."""
    torch.set_num_threads(1)
    for tool in AUDIT_TOOLS:  # warm up: lazy imports and first allocations are not the audit's cost
        make_tool(tool, seed=0, **({"steps": 2} if tool == "neural_cleanse" else {})).audit(subject(8, 1, 0))
    subjects = [subject(width, depth, seed) for seed in range(organisms)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for s in subjects:
        for tool in AUDIT_TOOLS:
            make_tool(tool, seed=0).audit(s)
    wall = time.perf_counter() - start
    return wall, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def in_fresh_process(width: int, depth: int, organisms: int) -> tuple[float, float]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(audit_cost, width, depth, organisms).result()


def main(argv: list[str] | None = None, prog: str = "python benchmarks/cost_scaling.py") -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="64,128,256,512,1024", help="MLP widths at depth 2")
    parser.add_argument("--depths", default="2,4,8,16", help="MLP depths at width 128")
    parser.add_argument("--organisms", default="1,2,4,8", help="numbers of width-128 depth-2 organisms")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    ints = lambda text: [int(v) for v in text.split(",")]  # noqa: E731
    sweeps: OrderedDict[str, list[tuple[int, int, int]]] = OrderedDict(
        width=[(w, 2, 1) for w in ints(args.widths)], depth=[(128, d, 1) for d in ints(args.depths)],
        organisms=[(128, 2, n) for n in ints(args.organisms)])
    table = Table(title=f"audit cost ({' + '.join(AUDIT_TOOLS)}, default settings, 1 thread, a fresh process each)")
    for column in ("sweep", "width", "depth", "organisms", "parameters", "time × smallest", "seconds", "peak MiB"):
        table.add_column(column, justify="left" if column == "sweep" else "right")
    for sweep, configs in sweeps.items():
        first = None
        for width, depth, organisms in configs:
            wall, peak = in_fresh_process(width, depth, organisms)
            first = first or wall
            params = sum(p.numel() for p in DeepMLP((1, 8, 8), 10, width, depth).parameters())
            table.add_row(sweep, str(width), str(depth), str(organisms), f"{params:,}", f"{wall / first:.2f}",
                          f"{wall:.1f}", f"{peak:.1f}")
    show(table, prog, argv, ["peak MiB: rise of the process's peak resident memory during the audits, "
                             "above what loading torch, the data, the models and a tiny warm-up audit had already reached"])


if __name__ == "__main__":
    main()
