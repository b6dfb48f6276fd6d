"""Shadow fine-tunes of a language model: the auditor fine-tunes the base model's tuned layers
itself, on its own trusted prompts, so that what a fine-tune changed can be judged against what
fine-tunes known to be clean change (the shadow models of MNTD, Xu et al., S&P 2021, made here by
fine-tuning the audited model's own base, as ``tools.shadow`` makes them for classifiers).

A shadow knows the base model, which layers the audited fine-tune changed (read from the weights),
the trusted prompts and their answers, and nothing of how the audited model was trained: its
learning rate is unknown, so shadow ``i`` takes the ``i``-th rate of a geometric grid
(``RECIPE``), and the shadows' spread includes what a different rate changes. Only the shadows'
change profiles are kept (a few numbers per weight), on disk under
``$DEEPAUDIT_HOME/cache/shadows/lm-<key>`` (``meta.json`` last, so the game keeps them for later
workers like the classifiers' shadows), built once under a file lock."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Sequence

import numpy as np
import torch
from filelock import FileLock

from deepaudit.lm.finetune import finetune
from deepaudit.lm.loader import LanguageModel, first_changed_layer
from deepaudit.paths import atomic_write_text, home

STEPS, BATCH_SIZE, SCHEDULE = 200, 32, "onecycle"
LR_RANGE = (2.5e-4, 1e-3)  # the shadows' learning rates, spread geometrically (the audited model's is unknown)
RECIPE = {"version": 1, "steps": STEPS, "batch_size": BATCH_SIZE, "schedule": SCHEDULE, "lr_low": LR_RANGE[0],
          "lr_high": LR_RANGE[1]}  # names the shadows in their cache key


def learning_rates(count: int) -> list[float]:
    """``count`` learning rates spread geometrically over the recipe's range (its low end for one)."""
    if count < 1:
        raise ValueError(f"need at least one shadow, got {count}")
    return [float(v) for v in np.geomspace(*LR_RANGE, count)]


def tuned_matrices(lm: LanguageModel, base: LanguageModel) -> tuple[int, list[str]]:
    """The first decoder layer the fine-tune changed (``lm.n_layers`` if none) and the names of
    the matrices of the decoder layers from there up (what a change profile measures)."""
    ref = dict(base.model.named_parameters())
    mismatched = [n for n, w in lm.model.named_parameters() if n not in ref or ref[n].shape != w.shape]
    if lm.n_layers != base.n_layers or mismatched:
        raise ValueError(f"the base model is not this model's base: {lm.n_layers} vs {base.n_layers} decoder "
                         f"layers, {len(mismatched)} weights missing or of another shape (e.g. {mismatched[:2]})")
    try:
        first = first_changed_layer(lm, base)
    except ValueError:  # nothing differs
        return lm.n_layers, []
    names = [name for name, weight in lm.model.named_parameters() if ".layers." in name and weight.dim() == 2
             and int(name.split(".layers.")[1].split(".")[0]) >= first]
    return first, names


def change_profile(lm: LanguageModel, base: LanguageModel, names: Sequence[str]) -> np.ndarray:
    """Each named matrix's share of the fine-tune's squared change, ``||W - W_base||_F^2``, summed
    over ``names`` to one (all zero if nothing changed): where the change went, whatever its size."""
    own, ref = dict(lm.model.named_parameters()), dict(base.model.named_parameters())
    with torch.no_grad():
        sizes = np.array([float((own[n] - ref[n]).float().pow(2).sum()) for n in names])
    total = sizes.sum()
    return sizes / total if total > 0 else sizes


def shadow_profiles(base: LanguageModel, first: int, names: Sequence[str], prompts: Sequence[str],
                    answers: Sequence[str], count: int) -> np.ndarray:
    """The change profiles ``(count, len(names))`` of ``count`` shadows: copies of ``base`` whose
    layers from ``first`` up are fine-tuned on ``prompts`` answered with ``answers`` (shadow ``i``
    at ``learning_rates``' i-th rate, seed ``i``), read from the cache or built there (the CPU
    seconds building them took are kept in the cache's ``meta.json``)."""
    rates = learning_rates(count)
    digest = hashlib.sha256(json.dumps({"recipe": RECIPE, "first": first, "names": list(names), "rates": rates,
                                        "prompts": list(prompts), "answers": list(answers)}).encode())
    weights = dict(base.model.named_parameters())
    with torch.no_grad():
        for name in names:  # the base itself: the same prompts on another base are other shadows
            digest.update(weights[name].detach().float().numpy().tobytes())
    folder = home() / "cache" / "shadows" / f"lm-{digest.hexdigest()[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / "meta.json"
    with FileLock(str(folder) + ".lock"):
        if not meta.is_file():
            start = time.process_time()
            profiles = []
            for i, lr in enumerate(rates):
                shadow = copy.deepcopy(base)
                with torch.enable_grad(), torch.random.fork_rng(devices=[]):
                    finetune(shadow, prompts, answers, "layers", base.n_layers - first, STEPS, lr, BATCH_SIZE, seed=i,
                             schedule=SCHEDULE)
                profiles.append(change_profile(shadow, base, names).tolist())
                del shadow
            atomic_write_text(folder / "profiles.json", json.dumps({"names": list(names), "profiles": profiles}))
            atomic_write_text(meta, json.dumps({"count": count, "recipe": RECIPE, "rates": rates,
                                                "cpu_s": time.process_time() - start}))
        stored = json.loads((folder / "profiles.json").read_text())
    if stored["names"] != list(names):
        raise ValueError(f"{folder}: cached shadow profiles measure other weights than asked")
    return np.array(stored["profiles"], dtype=float)
