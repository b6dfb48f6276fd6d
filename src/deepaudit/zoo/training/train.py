"""Train a grokking organism full-batch, recorded by the training monitor, then add Nanda et
al.'s progress measures (which need the final model's key frequencies) to the same run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepaudit.internals.fourier import frequency_norms, gini, key_frequencies, restricted_and_excluded_loss
from deepaudit.models.transformer import OneLayerTransformer
from deepaudit.monitor import Concept, Monitor, MonitorStore
from deepaudit.zoo.training.spec import GrokSpec, dataset

GROKKED_ACC = 0.95  # test accuracy that counts as generalised
MEMORISED_ACC = 0.99  # train accuracy that counts as memorised
PROBE_ROWS = 512  # training pairs the monitor probes for the declared concept a + b mod p


@dataclass
class GrokRun:
    """The trained model, its per-eval history, and the checkpoints the post-hoc measures use."""

    model: OneLayerTransformer
    steps: list[int] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)
    checkpoints: list[dict[str, torch.Tensor]] = field(default_factory=list)
    wall_s: float = 0.0


def embedding_measures(model: OneLayerTransformer) -> dict[str, float]:
    """Online Fourier measures (no labels, no future): Gini sparsity of the frequency norms of
    the token embedding and of the unembedding."""
    p = model.head.out_features
    return {"embed_gini": gini(frequency_norms(model.embed.weight[:p])),
            "unembed_gini": gini(frequency_norms(model.head.weight))}


def train_grok(spec: GrokSpec, monitor: Monitor | None = None) -> GrokRun:
    """Full-batch AdamW on the spec's training pairs; every ``eval_every`` steps record train and
    test loss and accuracy (and the monitor's measures), and keep a checkpoint."""
    x, y, train = dataset(spec)
    torch.manual_seed(spec.seed)
    model = OneLayerTransformer((3,), spec.p, **spec.arch_kwargs)
    optimiser = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, betas=(0.9, 0.98))
    run = GrokRun(model)
    start = time.perf_counter()
    for step in range(spec.steps + 1):
        if step % spec.eval_every == 0 or step == spec.steps:
            with torch.no_grad():
                logits = model(x)
            scalars = {f"{split}_{name}": value for split, rows in (("train", train), ("test", ~train))
                       for name, value in (("loss", float(F.cross_entropy(logits[rows], y[rows]))),
                                           ("acc", float((logits[rows].argmax(1) == y[rows]).float().mean())))}
            run.steps.append(step)
            for name, value in scalars.items():
                run.history.setdefault(name, []).append(value)
            run.checkpoints.append({k: v.clone() for k, v in model.state_dict().items()})
            if monitor is not None:
                monitor.record(step, model, **scalars)
        if step == spec.steps:
            break
        loss = F.cross_entropy(model(x[train]), y[train])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    run.wall_s = time.perf_counter() - start
    model.eval()
    return run


def grok_monitor(spec: GrokSpec, store: MonitorStore | Path, run_id: str) -> Monitor:
    """The monitor of a grokking run: activation statistics of the MLP and the final residual,
    a probe for the declared concept a + b mod p (on training pairs only) and the Fourier
    sparsity of the embeddings. Probes and Fourier measures every 5th record."""
    x, y, train = dataset(spec)
    rows = torch.nonzero(train).flatten()[:PROBE_ROWS]
    return Monitor(store, run_id, kind="grok", meta={"spec": spec.to_json()}, inputs=x[rows],
                   layers=["mlp_act", "resid_final"], concepts=[Concept("sum_mod_p", "mlp_act", y[rows])],
                   custom={"fourier": embedding_measures}, slow_every=5)


def first_step(steps: list[int], values: list[float], threshold: float) -> int | None:
    """The first step at which ``values`` reaches ``threshold`` and stays there to the end."""
    v = np.asarray(values)
    above = v >= threshold
    if not above[-1]:
        return None
    last_below = np.flatnonzero(~above)
    return int(steps[last_below[-1] + 1]) if len(last_below) else int(steps[0])


def progress_measures(spec: GrokSpec, run: GrokRun, every: int = 1) -> tuple[list[int], dict[str, list[float]]]:
    """Post-hoc measures at the run's checkpoints: restricted and excluded loss with the final
    model's key frequencies, and the share of the embedding's Fourier energy in them."""
    x, _, train = dataset(spec)
    keys = key_frequencies(frequency_norms(run.model.embed.weight[: spec.p]))
    model = OneLayerTransformer((3,), spec.p, **spec.arch_kwargs)
    steps: list[int] = []
    out: dict[str, list[float]] = {"restricted_loss": [], "excluded_loss": [], "key_share": []}
    for step, state in list(zip(run.steps, run.checkpoints))[::every]:
        model.load_state_dict(state)
        with torch.no_grad():
            logits = model(x)
        restricted, excluded = restricted_and_excluded_loss(logits, spec.p, keys, train)
        norms = frequency_norms(model.embed.weight[: spec.p]) ** 2
        steps.append(step)
        out["restricted_loss"].append(restricted)
        out["excluded_loss"].append(excluded)
        out["key_share"].append(float(norms[[k - 1 for k in keys]].sum() / norms.sum()))
    return steps, out
