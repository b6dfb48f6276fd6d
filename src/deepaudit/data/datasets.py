"""Small classification data sets that need no download, split once with a fixed seed."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from deepaudit.paths import home

SPLITS = ("train", "audit", "eval")


@dataclass(frozen=True)
class Dataset:
    """A data set's three splits as float tensors ``(N, C, *spatial)`` and int64 labels."""

    name: str
    x: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    num_classes: int
    value_range: tuple[float, float]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x["train"].shape[1:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return self.x[name], self.y[name]


def _split(x: np.ndarray, y: np.ndarray, sizes: tuple[int, int], seed: int) -> dict[str, tuple]:
    order = np.random.default_rng(seed).permutation(len(x))
    n_train, n_audit = sizes
    parts = {"train": order[:n_train], "audit": order[n_train : n_train + n_audit],
             "eval": order[n_train + n_audit :]}
    return {k: (x[idx], y[idx]) for k, idx in parts.items()}


def _digits() -> tuple[dict[str, tuple], tuple[float, float]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    return _split(x, bunch.target.astype(np.int64), (1000, 300), seed=0), (0.0, 1.0)


def _mnist1d() -> tuple[dict[str, tuple], tuple[float, float]]:
    # make_dataset takes a couple of seconds; cache its arrays (npz, never a pickle).
    cache = home() / "data" / "mnist1d.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            x, y = z["x"], z["y"]
    else:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples = 12000  # the default 5000 leaves an MLP's accuracy noisy by +-2 points
        raw = make_dataset(args)
        x = np.concatenate([raw["x"], raw["x_test"]]).astype(np.float32)[:, None, :]
        y = np.concatenate([raw["y"], raw["y_test"]]).astype(np.int64)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, y=y)
        tmp.replace(cache)
    return _split(x, y, (8000, 1000), seed=0), (-2.5, 2.5)


DATASETS = {"digits": _digits, "mnist1d": _mnist1d}


@cache
def load_dataset(name: str) -> Dataset:
    """Load a built-in data set by name (``digits`` or ``mnist1d``)."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; built-in ones are {sorted(DATASETS)}")
    parts, value_range = DATASETS[name]()
    xs = {k: torch.from_numpy(np.ascontiguousarray(v[0])) for k, v in parts.items()}
    ys = {k: torch.from_numpy(np.ascontiguousarray(v[1])) for k, v in parts.items()}
    return Dataset(name, xs, ys, int(ys["train"].max()) + 1, value_range)
