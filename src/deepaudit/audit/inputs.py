"""Load the user's trusted clean data: a built-in data set by name, a ``.npz``/``.npy`` array
file (never unpickled), a folder of images (labels from integer sub-folder names), or text
lines (a ``.txt`` file or a folder of them) for language models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepaudit.data import DATASETS, load_dataset
from deepaudit.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
X_KEYS, Y_KEYS = ("x", "inputs", "data", "images"), ("y", "labels", "targets")
MAX_TOKENS = 32


@dataclass
class CleanData:
    """Trusted inputs (``x``), their labels when known, and where they came from."""

    x: torch.Tensor
    y: torch.Tensor | None
    info: dict[str, Any] = field(default_factory=dict)


def _read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path} holds Python objects (a pickle); deepaudit reads plain numeric arrays only: {exc}") from exc
    except OSError as exc:
        raise DataError(f"cannot read {path} as a NumPy file: {exc}") from exc
    if isinstance(loaded, np.ndarray):
        return loaded, None
    with loaded:
        keys = list(loaded.keys())
        x_key = next((k for k in X_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
        if x_key is None:
            raise DataError(f"{path} has arrays {keys}; name the inputs one of {X_KEYS} (labels: one of {Y_KEYS})")
        y_key = next((k for k in Y_KEYS if k in keys), None)
        return loaded[x_key], (loaded[y_key] if y_key else None)


def _read_images(folder: Path, shape: list[int] | None) -> tuple[np.ndarray, np.ndarray | None]:
    from PIL import Image

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    channels = shape[0] if shape else 3
    arrays = []
    for f in files:
        with Image.open(f) as opened:
            img = opened.convert("L" if channels == 1 else "RGB")
            if shape:
                img = img.resize((shape[2], shape[1]))
            a = np.asarray(img, dtype=np.float32) / 255.0
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    if not arrays:
        return np.zeros((0,), np.float32), None
    if len({a.shape for a in arrays}) > 1:
        raise DataError(f"images in {folder} have different sizes; resize them, or give the model's input shape in its card")
    parents = [f.parent.name for f in files]
    labels = np.array([int(p) for p in parents]) if all(p.isdigit() for p in parents) else None
    return np.stack(arrays), labels


def _read_text(path: Path, tokenizer: Any) -> tuple[np.ndarray, list[str]]:
    files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    lines = [ln.strip() for f in files for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if tokenizer is None:
        raise DataError(f"{path} holds text; text data needs a language model with a tokenizer")
    if not lines:
        return np.zeros((0, MAX_TOKENS), np.int64), lines
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    ids = np.full((len(lines), MAX_TOKENS), pad, dtype=np.int64)
    for i, line in enumerate(lines):
        tokens = tokenizer(line, add_special_tokens=True)["input_ids"][-MAX_TOKENS:]
        ids[i, MAX_TOKENS - len(tokens):] = tokens  # left padding: the last position is real
    return ids, lines


def load_clean_data(spec: str, card: dict[str, Any], tokenizer: Any = None, max_inputs: int = 512,
                    seed: int = 0) -> CleanData:
    """Read ``spec`` into tensors, keep at most ``max_inputs`` (a seeded draw)."""
    path = Path(spec)
    info: dict[str, Any] = {"source": spec}
    y: np.ndarray | None
    if not path.exists() and spec in DATASETS:
        x_all, y_all = load_dataset(spec).split("audit")
        x, y = x_all.numpy(), y_all.numpy()
        info["kind"] = f"built-in data set {spec} (audit split)"
    elif path.is_file() and path.suffix in (".npz", ".npy"):
        x, y = _read_arrays(path)
        info["kind"] = "arrays"
    elif path.suffix == ".txt" or (path.is_dir() and any(path.rglob("*.txt"))):
        x, lines = _read_text(path, tokenizer)
        y = None
        info.update(kind="text lines", examples=lines[:3])
    elif path.is_dir():
        x, y = _read_images(path, card.get("input_shape"))
        info["kind"] = "images"
    elif path.exists():
        raise DataError(f"cannot read clean data from {path}: use .npz/.npy arrays, a folder of images, or .txt lines")
    else:
        raise DataError(f"clean data {spec!r} not found: not a file or folder, and not a built-in data set "
                        f"({', '.join(sorted(DATASETS))})")
    if x.dtype.kind not in "fiub":
        raise DataError(f"clean data in {spec} has dtype {x.dtype}; expected numbers")
    if len(x) == 0:
        raise DataError(f"the clean data {spec} is empty; the audit needs at least one trusted input")
    if y is not None and len(y) != len(x):
        raise DataError(f"clean data {spec} has {len(x)} inputs but {len(y)} labels")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"the clean data {spec} contains NaN or infinite values")
    info["total"] = int(len(x))
    idx = np.random.default_rng(seed).permutation(len(x))[:max_inputs]
    x_t = torch.from_numpy(np.ascontiguousarray(x[idx]))
    x_t = x_t.float() if x.dtype.kind == "f" or tokenizer is None else x_t.long()
    y_t = torch.from_numpy(np.ascontiguousarray(y[idx]).astype(np.int64)) if y is not None else None
    info.update(used=int(len(x_t)), labelled=y is not None, shape=list(x_t.shape[1:]))
    return CleanData(x_t, y_t, info)
