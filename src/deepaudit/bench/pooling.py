"""Max pooling through the channels-last kernel (``deepaudit.internals.pooling``) against PyTorch's
plain layers, on the zoo's two CNN architectures (8x8 digits, 40-sample MNIST-1D; random weights,
the speed does not depend on them): a trigger search's step (a forward and backward pass to the
inputs of 10 classes x 32 stamped inputs) and a student's training step (to the weights, 64
inputs). Figures are medians over repeats, as ratios to the plain layers in the same run (the
cases take turns); every case also checks that logits and gradients are bit for bit the same."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch
from rich.table import Table
from torch import nn

from deepaudit.bench.common import show, time_interleaved
from deepaudit.internals.pooling import channels_last_pooling
from deepaudit.models.architectures import build_model

SHAPES = {"digits CNN (1x8x8)": (1, 8, 8), "MNIST-1D CNN (1x40)": (1, 40)}


def _pass(model: nn.Module, x: torch.Tensor, to_inputs: bool) -> Callable[[], list[torch.Tensor]]:
    """One forward and backward pass; returns the logits and the gradients it made."""
    def run() -> list[torch.Tensor]:
        model.zero_grad()
        inputs = x.clone().requires_grad_(to_inputs)
        logits = model(inputs)
        logits.logsumexp(1).sum().backward()
        grads = [inputs.grad] if to_inputs else [p.grad for p in model.parameters()]
        return [logits.detach(), *[g.clone() for g in grads if g is not None]]
    return run


def _fast(run: Callable[[], list[torch.Tensor]], model: nn.Module) -> Callable[[], list[torch.Tensor]]:
    def fast() -> list[torch.Tensor]:
        with channels_last_pooling(model):
            return run()
    return fast


def main(argv: list[str] | None = None, prog: str = "python benchmarks/pooling_speed.py") -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: as the game's jobs run)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    table = Table(title=f"max pooling through the channels-last kernel: median time / plain layers "
                        f"({args.repeats} repeats, {args.threads} thread)")
    for column in ("model", "step", "plain ms", "× plain", "same numbers"):
        table.add_column(column, justify="left" if column in ("model", "step") else "right")
    for name, shape in SHAPES.items():
        torch.manual_seed(0)
        model = build_model("cnn", shape, 10)
        for step, batch, to_inputs in (("search (to the inputs)", 320, True), ("training (to the weights)", 64, False)):
            model.requires_grad_(not to_inputs)
            run = _pass(model, torch.rand(batch, *shape), to_inputs)
            same = all(torch.equal(a, b) for a, b in zip(run(), _fast(run, model)(), strict=True))
            times = time_interleaved({"plain": run, "fast": _fast(run, model)}, args.repeats)
            table.add_row(name, step, f"{1e3 * times['plain']:.2f}", f"{times['fast'] / times['plain']:.3f}",
                          "yes" if same else "NO")
    show(table, prog, argv)
