"""Load the user's trusted clean data: a built-in data set by name, a ``.npz``/``.npy`` array
file (never unpickled), a folder of images (labels from integer sub-folder names), or text
lines (a ``.txt`` file or a folder of them) for text classifiers; and for a causal language
model, trusted prompts: one per line of a ``.txt`` file, or a ``.csv``/``.jsonl`` table with a
text column and, optionally, a ``label`` column (then the probe-based tools run too)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepaudit.data import DATASETS, load_dataset
from deepaudit.data.files import TEXT_SUFFIX, FolderFiles, read_arrays, read_images, read_text_lines, sort_folder
from deepaudit.errors import DataError

MAX_TOKENS = 32


@dataclass
class CleanData:
    """Trusted inputs (``x``), their labels when known, where they came from, and what reading
    them changed on the way (``notes``: a cast, for the report)."""

    x: torch.Tensor
    y: torch.Tensor | None
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    texts: list[str] | None = None  # a language model's trusted prompts (``x`` is then empty, ``(N, 0)``)


def _tokenize(lines: list[str], tokenizer: Any) -> np.ndarray:
    """Token ids, ``MAX_TOKENS`` per line, left-padded so that the last position is real."""
    if not lines:
        return np.zeros((0, MAX_TOKENS), np.int64)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    ids = np.full((len(lines), MAX_TOKENS), pad, dtype=np.int64)
    for i, line in enumerate(lines):
        tokens = tokenizer(line, add_special_tokens=True)["input_ids"][-MAX_TOKENS:]
        ids[i, MAX_TOKENS - len(tokens):] = tokens
    return ids


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
        x, y = read_arrays(path)
        info["kind"] = "arrays"
    elif (path.is_file() and path.suffix == TEXT_SUFFIX) or path.is_dir():
        folder = sort_folder(path) if path.is_dir() else FolderFiles("text", [path], [])
        if folder.ignored:
            info["ignored"] = sorted(str(p.relative_to(path)) for p in folder.ignored)
        if folder.kind == "images":
            x, y = read_images(folder.files, card.get("input_shape"))
            info["kind"] = "images"
        else:
            lines = read_text_lines(folder.files)
            if tokenizer is None:
                raise DataError(f"{path} holds text; text data needs a language model with a tokenizer")
            x, y = _tokenize(lines, tokenizer), None
            info.update(kind="text lines", examples=lines[:3])
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
    notes = _label_notes(spec, y)
    info["total"] = int(len(x))
    idx = np.random.default_rng(seed).permutation(len(x))[:max_inputs]
    x_t = torch.from_numpy(np.ascontiguousarray(x[idx]))
    x_t = x_t.float() if x.dtype.kind == "f" or tokenizer is None else x_t.long()
    if x.dtype.kind != "f" and tokenizer is None:
        notes.append(f"the inputs in {spec} are stored as {x.dtype} and were cast to float32 unscaled "
                     f"(values {x.min()} to {x.max()}); scale them as the model expects if it was not trained on these")
    y_t = torch.from_numpy(np.ascontiguousarray(y[idx]).astype(np.int64)) if y is not None else None
    info.update(used=int(len(x_t)), labelled=y is not None, shape=list(x_t.shape[1:]))
    return CleanData(x_t, y_t, info, notes)


def _label_notes(spec: str, y: np.ndarray | None) -> list[str]:
    """Labels must be whole class indices: integers, or floats holding whole numbers (read as
    integers, and the report says so); anything else is refused."""
    if y is None:
        return []
    if y.dtype.kind not in "fiub":
        raise DataError(f"the labels in {spec} have dtype {y.dtype}; expected integer class indices")
    if y.dtype.kind != "f":
        return []
    whole = np.isfinite(y) & (y == np.round(y))
    if not whole.all():
        raise DataError(f"the labels in {spec} must be whole class indices; found {y[~whole][:3].tolist()} "
                        f"({int((~whole).sum())} of {len(y)} are not whole numbers)")
    return [f"the labels in {spec} are stored as {y.dtype} and were read as integer class indices"]


TEXT_COLUMNS = ("prompt", "text", "statement")
TABLE_SUFFIXES = (".csv", ".jsonl")


def _table_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV (with a header) or JSON-lines file, as dictionaries."""
    lines = read_text_lines([path])
    if path.suffix != ".jsonl":
        return list(csv.DictReader(io.StringIO("\n".join(lines))))
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number} is not JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {number} is not a JSON object with a text field")
        rows.append(row)
    return rows


def _label(value: Any, path: Path, row: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}: row {row} has label {value!r}; labels must be whole numbers (0/1)") from None
    if not number.is_integer():
        raise DataError(f"{path}: row {row} has label {value!r}; labels must be whole numbers (0/1)")
    return int(number)


def load_prompts(spec: str, max_inputs: int = 512, seed: int = 0) -> CleanData:
    """A language model's trusted prompts from ``spec``, at most ``max_inputs`` (a seeded draw)."""
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"trusted prompts {spec!r} not found: give a .txt file (one prompt per line) or a "
                        f"{'/'.join(TABLE_SUFFIXES)} table with a text column ({', '.join(TEXT_COLUMNS)})")
    info: dict[str, Any] = {"source": spec}
    labels: list[int] | None = None
    if path.suffix in TABLE_SUFFIXES:
        rows = _table_rows(path)
        columns = list(rows[0]) if rows else []
        column = next((c for c in TEXT_COLUMNS if c in columns), None)
        if rows and column is None:
            raise DataError(f"{path} has no text column: expected one of {list(TEXT_COLUMNS)}, found {columns}")
        texts = [str(r.get(column or "") or "").strip() for r in rows]
        if rows and "label" in columns:
            labels = [_label(r.get("label"), path, i + 2) for i, r in enumerate(rows)]
        keep = [i for i, t in enumerate(texts) if t]
        texts, labels = [texts[i] for i in keep], (None if labels is None else [labels[i] for i in keep])
        info.update(kind=f"table ({path.suffix[1:]}), text column {column!r}", label_column="label" * (labels is not None))
    elif path.suffix == TEXT_SUFFIX:
        texts = read_text_lines([path])
        info["kind"] = "text lines"
    else:
        raise DataError(f"cannot read trusted prompts from {path}: use a .txt file (one prompt per line) or a "
                        f"{'/'.join(TABLE_SUFFIXES)} table")
    if not texts:
        raise DataError(f"the trusted prompts in {spec} are empty; the audit needs at least one")
    pick = np.random.default_rng(seed).permutation(len(texts))[:max_inputs]
    chosen = [texts[i] for i in pick]
    y = torch.tensor([labels[i] for i in pick]) if labels is not None else None
    info.update(total=len(texts), used=len(chosen), labelled=y is not None, examples=chosen[:3])
    return CleanData(torch.empty(len(chosen), 0), y, info, texts=chosen)
