"""Built-in data sets: fixed, disjoint splits of the documented sizes, shapes and ranges."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from deepaudit.data import load_dataset


def rows(x: torch.Tensor) -> Counter:
    """Multiset of the rows of ``x`` (as bytes)."""
    return Counter(r.tobytes() for r in x.numpy().reshape(len(x), -1))


def test_digits_splits():
    """digits: train/audit/eval of 1000/300/497, (1, 8, 8) inputs in [0, 1], 10 classes."""
    data = load_dataset("digits")
    sizes = {name: len(data.split(name)[0]) for name in ("train", "audit", "eval")}
    assert sizes == {"train": 1000, "audit": 300, "eval": 497}
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10 and data.value_range == (0.0, 1.0)
    for name in ("train", "audit", "eval"):
        x, y = data.split(name)
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and len(x) == len(y)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert set(y.tolist()) == set(range(10))


def test_digits_splits_partition_the_data():
    """The three splits together are exactly the 1797 digits, each image used once."""
    data = load_dataset("digits")
    everything = torch.cat([data.split(n)[0] for n in ("train", "audit", "eval")])
    original = torch.from_numpy((load_digits().images / 16.0).astype(np.float32)[:, None])
    assert rows(everything) == rows(original)
    assert len(everything) == 1797


def test_digits_is_cached_and_stable():
    """load_dataset returns the same fixed split on every call."""
    assert load_dataset("digits") is load_dataset("digits")
    load_dataset.cache_clear()
    assert torch.equal(load_dataset("digits").split("audit")[0][:5], load_dataset("digits").split("audit")[0][:5])


def test_mnist1d_shapes(deepaudit_home):
    """mnist1d: 12000 sequences of shape (1, 40), split 8000/1000/3000, cached as npz."""
    data = load_dataset("mnist1d")
    assert data.input_shape == (1, 40) and data.num_classes == 10
    sizes = [len(data.split(name)[0]) for name in ("train", "audit", "eval")]
    assert sizes == [8000, 1000, 3000] and sum(sizes) == 12000
    assert (deepaudit_home / "data" / "mnist1d.npz").is_file()


def test_unknown_dataset_and_split():
    """An unknown data set or split name is a ValueError naming it."""
    with pytest.raises(ValueError, match="cifar"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="test"):
        load_dataset("digits").split("test")
