"""Property-based: the data readers and the card and weights readers, fed random bytes and
truncated or byte-flipped versions of valid files (and valid cards with one field replaced by
any JSON value), either read the file or raise one of deepaudit's own errors; never anything
else. A fixed seed and a modest example count keep it deterministic and quick."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save

from deepaudit.data.files import read_arrays, read_images, read_text_lines, sort_folder
from deepaudit.errors import DeepAuditError
from deepaudit.models import build_model
from deepaudit.subject import CARD_FILE, WEIGHTS_FILE, load_model, read_card

FUZZ = settings(derandomize=True, max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(3 * 8 * 8, dtype=np.float32).reshape(3, 1, 8, 8))
    return buf.getvalue()


def _npz(compressed: bool) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, x=np.ones((3, 1, 8, 8), np.float32), y=np.arange(3))
    return buf.getvalue()


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


CARD = {"arch": "mlp", "arch_kwargs": {"hidden": 16}, "dataset": "digits", "input_shape": [1, 8, 8],
        "num_classes": 10, "value_range": [0.0, 1.0], "clean_split": "audit"}
VALID = {
    ".npy": _npy(), ".npz": _npz(False), ".npz ": _npz(True),  # the space keeps both archives as keys
    ".png": _png(), ".txt": b"first line\n  second line  \n\nthird\n",
    CARD_FILE: json.dumps(CARD).encode(),
    WEIGHTS_FILE: save(dict(build_model("mlp", (1, 8, 8), 10, hidden=16).state_dict())),
}


def damaged(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, a truncation of ``valid``, or ``valid`` with a few bytes overwritten (often
    in its first bytes, where the headers are)."""
    position = st.integers(0, min(len(valid), 160) - 1) | st.integers(0, len(valid) - 1)
    flips = st.lists(st.tuples(position, st.integers(0, 255)), min_size=1, max_size=8)

    def flip(changes: list[tuple[int, int]]) -> bytes:
        out = bytearray(valid)
        for at, value in changes:
            out[at] = value
        return bytes(out)

    return st.one_of(st.binary(max_size=1024), st.integers(0, len(valid)).map(lambda n: valid[:n]), flips.map(flip))


def only_project_errors(read: Callable[[], object]) -> None:
    """Run ``read``: a result or a DeepAuditError are fine; any other exception fails the test."""
    try:
        read()
    except DeepAuditError:
        pass


def in_tmp(name: str, blob: bytes, read: Callable[[Path], object]) -> None:
    """Write ``blob`` as ``name`` in a fresh folder and read the file with ``read``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        only_project_errors(lambda: read(path))


@FUZZ
@given(st.sampled_from([".npy", ".npz", ".npz "]).flatmap(lambda k: st.tuples(st.just(k), damaged(VALID[k]))))
def test_array_reader_raises_only_data_errors(case):
    kind, blob = case
    in_tmp("data" + kind.strip(), blob, read_arrays)


@FUZZ
@given(damaged(VALID[".png"]), st.sampled_from([[1, 8, 8], [3, 4, 4], None]))
def test_image_reader_raises_only_data_errors(blob, shape):
    in_tmp("images/3/a.png", blob, lambda path: read_images(sort_folder(path.parent.parent).files, shape))


@FUZZ
@given(damaged(VALID[".txt"]))
def test_text_reader_raises_only_data_errors(blob):
    in_tmp("lines.txt", blob, lambda path: read_text_lines([path]))


def load_organism(card: bytes, weights: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / CARD_FILE).write_bytes(card)
        (folder / WEIGHTS_FILE).write_bytes(weights)
        only_project_errors(lambda: load_model(folder, read_card(folder)))


@FUZZ
@given(damaged(VALID[CARD_FILE]))
def test_damaged_card_raises_only_organism_errors(card):
    load_organism(card, VALID[WEIGHTS_FILE])


@FUZZ
@given(damaged(VALID[WEIGHTS_FILE]))
def test_damaged_weights_raise_only_organism_errors(weights):
    load_organism(VALID[CARD_FILE], weights)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=8)
FIELDS = [*CARD, "arch_kwargs.hidden", "arch_kwargs.extra"]


@FUZZ
@given(st.sampled_from(FIELDS), JSON)
def test_any_card_field_value_raises_only_organism_errors(field, value):
    """A valid card with one field (or one architecture argument) set to any JSON value."""
    card = json.loads(json.dumps(CARD))
    if field.startswith("arch_kwargs."):
        card["arch_kwargs"][field.split(".")[1]] = value
    else:
        card[field] = value
    load_organism(json.dumps(card).encode(), VALID[WEIGHTS_FILE])
