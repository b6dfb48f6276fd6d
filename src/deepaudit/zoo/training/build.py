"""Build grokking organisms into the zoo's folder format (safetensors weights, public card,
sealed truth), with their training recorded in the results store by the monitor. Beside them,
``training.json`` holds the measures a monitor records online (public: what a forecaster may
read); the truth holds every measure (test accuracy and loss, the post-hoc progress measures)
and what the builder measured: key frequencies, when the run memorised, when it grokked, and
its phases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.internals import module_names
from deepaudit.internals.fourier import frequency_norms, key_frequencies
from deepaudit.monitor import MonitorStore
from deepaudit.subject import WEIGHTS_FILE
from deepaudit.weights import save_weights
from deepaudit.zoo.folder import BuildResult, fixed_threads, lookup, save_folder
from deepaudit.zoo.training.spec import GrokSpec
from deepaudit.zoo.training.train import (
    GROKKED_ACC,
    MEMORISED_ACC,
    GrokRun,
    first_step,
    grok_monitor,
    progress_measures,
    train_grok,
)

SCHEMA = 1
POSTHOC = "posthoc/"  # measures computed after training, with knowledge of the final model
HIDDEN = ("test_", POSTHOC)  # what a forecaster may not see: test data, the final model
TRAINING_FILE = "training.json"  # the public measures


def series_json(series: dict[str, tuple[np.ndarray, np.ndarray]], hidden: bool) -> dict[str, list[list[float]]]:
    """Measure -> [steps, values], without the hidden measures unless ``hidden``."""
    return {name: [steps.tolist(), values.tolist()] for name, (steps, values) in sorted(series.items())
            if hidden or not name.startswith(HIDDEN)}


def read_series(data: dict[str, list[list[float]]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: (np.asarray(steps, dtype=int), np.asarray(values, dtype=float)) for name, (steps, values) in data.items()}


def run_id(spec: GrokSpec) -> str:
    """The monitor run of an organism."""
    return f"grok:{spec.digest()}"


def phases(run: GrokRun, post_steps: list[int], post: dict[str, list[float]],
           weight_norms: list[float]) -> dict[str, Any]:
    """The three phases of Nanda et al., with our boundaries: memorisation until train accuracy
    reaches 99%; circuit formation until the test loss falls below half its peak; cleanup until
    test accuracy reaches 95%. With the progress measures at each boundary, as evidence."""
    steps, hist = run.steps, run.history
    memorised = first_step(steps, hist["train_acc"], MEMORISED_ACC)
    grokked = first_step(steps, hist["test_acc"], GROKKED_ACC)
    test_loss = np.asarray(hist["test_loss"])
    peak = int(np.argmax(test_loss))
    falling = np.flatnonzero(test_loss[peak:] < 0.5 * test_loss[peak])
    cleanup = int(steps[peak + falling[0]]) if len(falling) else None

    def at(step: int | None) -> dict[str, float] | None:
        if step is None:
            return None
        i, j = steps.index(step), int(np.searchsorted(post_steps, step))
        j = min(j, len(post_steps) - 1)
        return {"test_loss": float(test_loss[i]), "train_loss": float(hist["train_loss"][i]),
                "weight_norm": float(weight_norms[i]), "restricted_loss": float(post["restricted_loss"][j]),
                "excluded_loss": float(post["excluded_loss"][j])}

    return {"memorised_step": memorised, "cleanup_step": cleanup, "grok_step": grokked,
            "at_start": at(steps[0]), "at_memorised": at(memorised), "at_cleanup": at(cleanup),
            "at_grokked": at(grokked), "at_end": at(steps[-1])}


def card_for(spec: GrokSpec, model) -> dict[str, Any]:
    """The public card: architecture and task, nothing about how training went."""
    return {"schema": SCHEMA, "task": "modular_addition", "modulus": spec.p,
            "arch": "transformer", "arch_kwargs": spec.arch_kwargs, "dataset": "modadd",
            "input_shape": [3], "num_classes": spec.p, "value_range": [0, spec.p],
            "layers": module_names(model), "feature_layer": "resid_final"}


def build_grok_organism(spec: GrokSpec, out: Path, store: Path) -> BuildResult:
    """Train ``spec`` into ``out/<id>`` (unless built) and record its run in ``store``."""
    out, oid = Path(out), spec.digest()
    known = lookup(out, oid)
    if known is not None:
        return known
    monitor_store = MonitorStore(store)
    try:
        with fixed_threads(), grok_monitor(spec, monitor_store, run_id(spec)) as monitor:
            run = train_grok(spec, monitor)
            post_steps, post = progress_measures(spec, run)
            monitor.store.add_points(monitor.run_id, [(s, POSTHOC + name, v) for name, values in post.items()
                                                      for s, v in zip(post_steps, values)])
        series = monitor_store.series(run_id(spec))
        norms = series["weight_norm/total"][1]
        keys = key_frequencies(frequency_norms(run.model.embed.weight[: spec.p]))
        truth = {
            "schema": SCHEMA, "organism_id": oid, "spec": spec.to_json(), "role": spec.role,
            "key_frequencies": keys, "monitor_run": run_id(spec),
            "final_train_acc": run.history["train_acc"][-1], "final_test_acc": run.history["test_acc"][-1],
            "grokked": run.history["test_acc"][-1] >= GROKKED_ACC, "train_wall_s": round(run.wall_s, 2),
            "phases": phases(run, post_steps, post, list(norms)), "series": series_json(series, hidden=True),
        }
        monitor_store.finish_run(run_id(spec), "done", {"organism_id": oid, "wall_s": round(run.wall_s, 2)})
    finally:
        monitor_store.close()

    def write(folder: Path) -> None:
        save_weights(run.model, folder / WEIGHTS_FILE)
        (folder / TRAINING_FILE).write_text(json.dumps(series_json(series, hidden=False)))

    return save_folder(out, oid, write, card_for(spec, run.model), truth)

