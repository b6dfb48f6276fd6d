"""The training monitor: a callback any PyTorch training loop calls at each step or epoch. It
records internal progress measures of the model into the results store: weight and gradient
norms per layer, relative update sizes, activation statistics and effective rank of chosen
layers, held-out accuracy of probes for declared concepts, and custom measures.

It never changes the model: no gradient, no random draw, training mode restored. Points are
buffered and written in batches, so a step costs a few norms and one small forward pass."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepaudit.internals import capture
from deepaudit.monitor import measures
from deepaudit.monitor.store import MonitorStore

CustomMeasure = Callable[[nn.Module], float | Mapping[str, float]]


@dataclass(frozen=True)
class Concept:
    """A declared concept: a label per monitor input (``labels[i]`` for ``inputs[i]``), probed
    for in the activations of ``layer``."""

    name: str
    layer: str
    labels: torch.Tensor


class Monitor:
    """Records measures of a model during training into ``store`` under ``run_id``.

    Call ``record(step, model, loss=...)`` from the loop (any keyword is recorded as a scalar),
    or pass the monitor itself as ``on_epoch`` to ``deepaudit.zoo.vision.train.train``. ``inputs`` are
    a fixed batch for activation statistics of ``layers`` and for the ``concepts``' probes;
    ``custom`` maps a name to a function of the model. Probes (the slowest measure) and custom
    measures run every ``slow_every`` records. Use as a context manager, or call ``close``."""

    def __init__(self, store: MonitorStore | Path, run_id: str, kind: str = "custom",
                 meta: Mapping[str, Any] | None = None, inputs: torch.Tensor | None = None,
                 layers: Sequence[str] = (), concepts: Sequence[Concept] = (),
                 custom: Mapping[str, CustomMeasure] | None = None, slow_every: int = 1,
                 flush_every: int = 200):
        self._owns_store = not isinstance(store, MonitorStore)
        self.store: MonitorStore = store if isinstance(store, MonitorStore) else MonitorStore(store)
        self.run_id, self.inputs, self.concepts = run_id, inputs, list(concepts)
        self.layers = sorted(set(layers) | {c.layer for c in self.concepts})
        if self.layers and inputs is None:
            raise ValueError("activation statistics and probes need a batch of monitor inputs")
        n_inputs = len(inputs) if inputs is not None else 0
        for concept in self.concepts:
            if len(concept.labels) != n_inputs:
                raise ValueError(f"concept {concept.name!r} has {len(concept.labels)} labels for "
                                 f"{n_inputs} monitor inputs")
        self.custom = dict(custom or {})
        self.slow_every, self.flush_every = max(1, slow_every), max(1, flush_every)
        self._buffer: list[tuple[int, str, float]] = []
        self._before: dict[str, list[torch.Tensor]] | None = None
        self._records = 0
        self.store.start_run(run_id, kind, dict(meta or {}))

    def record(self, step: int, model: nn.Module, **scalars: float) -> dict[str, float]:
        """Measure ``model`` now (after the optimiser step) and buffer the values; returns them."""
        values = {name: float(v) for name, v in scalars.items()}
        values.update(_prefixed("weight_norm", measures.weight_norms(model)))
        values.update(_prefixed("grad_norm", measures.grad_norms(model)))
        if self._before is not None:
            values.update(_prefixed("update", measures.update_sizes(self._before, model)))
        self._before = measures.snapshot(model)
        slow = self._records % self.slow_every == 0
        if self.layers:
            values.update(self._activations(model, probes=slow))
        if slow:
            for name, fn in self.custom.items():
                with torch.no_grad():
                    result = fn(model)
                values.update(_prefixed(name, result) if isinstance(result, Mapping) else {name: float(result)})
        self._records += 1
        self._buffer.extend((step, name, value) for name, value in values.items())
        if self._records % self.flush_every == 0:
            self.flush()
        return values

    def __call__(self, epoch: int, model: nn.Module, loss: float) -> None:
        """The ``on_epoch`` callback of ``deepaudit.zoo.vision.train.train``."""
        self.record(epoch, model, loss=loss)

    @torch.no_grad()
    def _activations(self, model: nn.Module, probes: bool) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            with capture(model, self.layers) as cache:
                model(self.inputs)
        finally:
            model.train(was_training)
        values = {}
        for layer in self.layers:
            values.update(_prefixed(f"act/{layer}", measures.activation_stats(cache[layer])))
        if probes:
            for concept in self.concepts:
                values[f"probe/{concept.name}"] = measures.probe_accuracy(cache[concept.layer], concept.labels)
        return values

    def flush(self) -> None:
        """Write the buffered points to the store."""
        if self._buffer:
            self.store.add_points(self.run_id, self._buffer)
            self._buffer = []

    def close(self, status: str = "done", meta: Mapping[str, Any] | None = None) -> None:
        """Flush and mark the run finished, merging ``meta`` into its metadata. A store the
        monitor opened itself (from a path) is closed."""
        self.flush()
        self.store.finish_run(self.run_id, status, dict(meta or {}))
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("failed" if exc_type is not None else "done")


def _prefixed(prefix: str, values: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}/{name}": float(v) for name, v in values.items()}
