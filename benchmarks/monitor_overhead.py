"""How much the training monitor slows a zoo organism's training: the same digits-MLP training
(the zoo's recipe and data) with and without the monitor the zoo builder attaches, alternated
over repeats, single-threaded as the builder trains. Prints the ratio and that the weights are
identical.

    nice python benchmarks/monitor_overhead.py [repeats]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from deepaudit.data import load_dataset
from deepaudit.models import build_model, penultimate_layer
from deepaudit.monitor import Concept, Monitor
from deepaudit.zoo.vision.train import recipe_for, train


def run(monitor_path: Path | None, x, y, recipe) -> tuple[float, dict]:
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, **recipe.arch_kwargs)
    monitor = None
    if monitor_path is not None:
        layer = penultimate_layer(model)
        monitor = Monitor(monitor_path, "bench", inputs=x[:256], layers=[layer],
                          concepts=[Concept("label", layer, y[:256])], slow_every=5)
    start = time.perf_counter()
    train(model, x, y, recipe, seed=0, on_epoch=monitor)
    if monitor is not None:
        monitor.close()
    return time.perf_counter() - start, model.state_dict()


def main(repeats: int = 3) -> None:
    torch.set_num_threads(1)
    x, y = load_dataset("digits").split("train")
    recipe = recipe_for("digits", "mlp")
    plain, watched, same = [], [], True
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            t0, a = run(None, x, y, recipe)
            t1, b = run(Path(tmp) / "r.sqlite", x, y, recipe)
            plain.append(t0)
            watched.append(t1)
            same &= all(torch.equal(a[k], b[k]) for k in a)
    ratio = min(watched) / min(plain)
    print(f"digits MLP, {recipe.epochs} epochs, {len(x)} training inputs, best of {repeats}:")
    print(f"  monitored / plain training time = {ratio:.2f}x; identical weights: {same}")
    print(f"  command: nice python benchmarks/monitor_overhead.py {repeats}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
