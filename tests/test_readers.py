"""Untrusted data files and model cards are refused with a clear deepaudit error, before
anything is allocated from what they declare: NumPy headers are checked against the file's
size, images against a pixel bound, and a card's sizes against the weights' own shapes (on the
meta device) before the model is built for real."""

from __future__ import annotations

import functools
import json
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from deepaudit.audit.inputs import load_clean_data
from deepaudit.cli import app
from deepaudit.data import load_dataset
from deepaudit.data.files import MAX_IMAGE_PIXELS, read_arrays, read_images, read_text_lines, sort_folder
from deepaudit.errors import DataError, DeepAuditError, OrganismError
from deepaudit.models import architectures, build_model
from deepaudit.subject import load_model, load_subject, read_card
from deepaudit.weights import build_and_load, check_fits, safetensors_shapes

CARD = {"input_shape": [1, 8, 8]}
HUGE = (10**15, 1, 8, 8)  # 32 PB of float32 if anything believed it


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A valid .npy (version 1.0) header declaring ``shape`` and ``descr``, without the data."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares ``width`` x ``height`` grey pixels and holds almost no data: the
    shape of a decompression bomb, made without allocating it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def digit_pngs(folder: Path, n: int = 6) -> Path:
    """``n`` real 8x8 digits as PNGs in label sub-folders (``folder/<label>/<i>.png``)."""
    xs, ys = load_dataset("digits").split("audit")
    for i in range(n):
        sub = folder / str(int(ys[i]))
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray((xs[i, 0].numpy() * 255).astype(np.uint8), mode="L").save(sub / f"{i}.png")
    return folder


def bad_data(kind: str, tmp_path: Path) -> Path:
    """One hostile or broken data file (or folder) of each kind the issue names."""
    if kind == "npz_object":
        path = tmp_path / "objects.npz"
        np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    elif kind == "npy_0d":
        path = tmp_path / "scalar.npy"
        np.save(path, np.float32(3.0))
    elif kind == "npy_huge":
        path = tmp_path / "huge.npy"
        path.write_bytes(npy_header(HUGE) + b"\0" * 256)
    elif kind == "npy_huge_object":
        path = tmp_path / "huge_object.npy"
        path.write_bytes(npy_header(HUGE, "|O") + b"\0" * 256)
    elif kind == "npz_huge":
        path = tmp_path / "huge.npz"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("x.npy", npy_header(HUGE) + b"\0" * 256)
    elif kind == "npz_garbage":
        path = tmp_path / "garbage.npz"
        path.write_bytes(b"PK\x03\x04" + np.random.default_rng(0).bytes(2000))
    elif kind == "fake_png":
        path = tmp_path / "images"
        (path / "0").mkdir(parents=True)
        (path / "0" / "a.png").write_text("this is not an image")
    elif kind == "bomb_png":
        path = tmp_path / "images"
        png_header_only(path / "0" / "bomb.png", 30_000, 30_000)
    elif kind == "binary_txt":
        path = tmp_path / "lines.txt"
        path.write_bytes(bytes(range(1, 256)) * 4)
    else:
        raise AssertionError(kind)
    return path


DATA_CASES = {
    "npz_object": "Python objects",
    "npy_0d": "0-d",
    "npy_huge": "declares",
    "npy_huge_object": "Python objects",
    "npz_huge": "declares",
    "npz_garbage": "not a valid .npz",
    "fake_png": "cannot read the image",
    "bomb_png": "pixels",
    "binary_txt": "not UTF-8 text .a binary file",
}


@pytest.mark.parametrize("kind", sorted(DATA_CASES))
def test_hostile_data_gives_a_data_error(kind, tmp_path):
    """Each hostile file: a DataError naming the file and the problem, never a traceback, a
    misleading "pickle" message, or an allocation from an unchecked header."""
    path = bad_data(kind, tmp_path)
    with pytest.raises(DataError, match=DATA_CASES[kind]) as info:
        load_clean_data(str(path), CARD)
    assert path.name in str(info.value)
    if "object" not in kind:
        assert "pickle" not in str(info.value)


def test_huge_header_is_refused_before_numpy_allocates(tmp_path, monkeypatch):
    """The header is judged by itself: numpy's own loader is never asked to read the array."""
    def no_numpy_load(*_args, **_kwargs):
        raise AssertionError("np.load called on an unchecked file")

    monkeypatch.setattr(np, "load", no_numpy_load)
    for kind in ("npy_huge", "npz_huge"):
        with pytest.raises(DataError, match="declares"):
            read_arrays(bad_data(kind, tmp_path))


def test_npz_member_claiming_a_gigabyte_costs_nothing(tmp_path):
    """A 2 KB .npz whose zip directory and .npy header both claim 1 GiB: refused as truncated
    once its real bytes run out, having allocated only what was really there."""
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", npy_header((1 << 28,)) + b"\0" * 1024)
    raw = bytearray(path.read_bytes())
    central = raw.index(b"PK\x01\x02")
    raw[central + 24 : central + 28] = struct.pack("<I", (1 << 30) + 128)  # the declared uncompressed size
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="truncated|not a valid"):
            read_arrays(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_arrays_round_trip(tmp_path):
    """Plain .npy and .npz files (also big-endian and Fortran-ordered) read back exactly, native."""
    x = np.arange(2 * 1 * 8 * 8, dtype=">f4").reshape(2, 1, 8, 8)
    np.save(tmp_path / "x.npy", np.asfortranarray(x))
    got, labels = read_arrays(tmp_path / "x.npy")
    assert labels is None and np.array_equal(got, x) and got.dtype == np.float32 and got.dtype.isnative
    np.savez_compressed(tmp_path / "d.npz", inputs=x, labels=np.array([3, 4]))
    got, labels = read_arrays(tmp_path / "d.npz")
    assert np.array_equal(got, x) and labels is not None and labels.tolist() == [3, 4]


def test_truncated_npy_is_named(tmp_path):
    """A .npy cut short: DataError that says how many bytes the header promised."""
    path = tmp_path / "cut.npy"
    np.save(path, np.zeros((10, 1, 8, 8), np.float32))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"declares .* \(2,560 bytes\)"):
        read_arrays(path)


def test_npy_header_with_absurd_axes(tmp_path):
    """A header with 70 axes (numpy allows at most 64) or a negative size: named, not a crash."""
    for shape in ((1,) * 70, (4, -1)):
        path = tmp_path / "axes.npy"
        path.write_bytes(npy_header(shape) + b"\0" * 64)
        with pytest.raises(DataError, match="axes.npy declares the shape"):
            read_arrays(path)


def test_labels_must_be_one_number_per_input(tmp_path):
    """Labels with a second axis, or of a non-numeric dtype, are refused by name."""
    np.savez(tmp_path / "a.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.zeros((4, 2), np.int64))
    with pytest.raises(DataError, match="labels"):
        read_arrays(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.array(["a", "b", "c", "d"]))
    with pytest.raises(DataError, match="labels.*dtype"):
        read_arrays(tmp_path / "b.npz")


def test_image_folder_with_a_stray_text_file_is_read_as_images(tmp_path):
    """One notes.txt beside the images: the folder is still images, and the stray file is named
    as ignored (before, the whole folder was read as text)."""
    folder = digit_pngs(tmp_path / "images")
    (folder / "notes.txt").write_text("where these images came from\n")
    clean = load_clean_data(str(folder), CARD)
    assert clean.info["kind"] == "images" and tuple(clean.x.shape) == (6, 1, 8, 8)
    assert clean.info["ignored"] == ["notes.txt"]
    assert clean.y is not None
    sorted_ = sort_folder(folder)
    assert sorted_.kind == "images" and [p.name for p in sorted_.ignored] == ["notes.txt"]


def test_image_pixel_bound_is_checked_before_decoding(tmp_path):
    """An image just over deepaudit's pixel bound (under PIL's own) is refused from its header."""
    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    path = png_header_only(tmp_path / "big.png", side, side)
    with pytest.raises(DataError, match="pixels"):
        read_images([path], [1, 8, 8])


def test_images_need_an_image_input_shape(tmp_path):
    """A folder of images for a model whose inputs are not (channels, height, width)."""
    folder = digit_pngs(tmp_path / "images", n=2)
    with pytest.raises(DataError, match="not images"):
        load_clean_data(str(folder), {"input_shape": [64]})
    for shape in (64, "abc", [2, 8, 8], [1, 100_000, 100_000], [1, 8.0, 8]):
        with pytest.raises(DataError, match="not images"):
            read_images(sort_folder(folder).files, shape)


def test_text_with_nul_bytes_is_binary(tmp_path):
    path = tmp_path / "zeros.txt"
    path.write_bytes(b"hello\0\0\0world\n")
    with pytest.raises(DataError, match="binary"):
        read_text_lines([path])
    (tmp_path / "ok.txt").write_text("one\n\n  two  \n")
    assert read_text_lines([tmp_path / "ok.txt"]) == ["one", "two"]


def test_empty_folder_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("nothing here")
    with pytest.raises(DataError, match="no images"):
        load_clean_data(str(tmp_path / "empty"), CARD)


# -- cards and weights --------------------------------------------------------------------
def edit_card(folder: Path, **changes) -> Path:
    card = json.loads((folder / "card.json").read_text())
    for key, value in changes.items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = value
    (folder / "card.json").write_text(json.dumps(card))
    return folder


@pytest.fixture
def real_builds(monkeypatch) -> list[str]:
    """The device of every MLP construction: "meta" (free) or "cpu" (allocates)."""
    devices: list[str] = []
    original = architectures.MLP.__init__

    @functools.wraps(original)
    def spy(self, *args, **kwargs):
        devices.append(torch.empty(0).device.type)
        original(self, *args, **kwargs)

    monkeypatch.setattr(architectures.MLP, "__init__", spy)
    return devices


CARD_CASES = {
    "negative input size": ({"input_shape": [1, -8, 8]}, "input_shape"),
    "zero classes": ({"num_classes": 0}, "num_classes"),
    "negative hidden": ({"arch_kwargs": {"hidden": -5}}, "hidden"),
    "fractional hidden": ({"arch_kwargs": {"hidden": 12.5}}, "hidden"),
    "text hidden": ({"arch_kwargs": {"hidden": "128"}}, "hidden"),
    "boolean hidden": ({"arch_kwargs": {"hidden": True}}, "hidden"),
    "fractional classes": ({"num_classes": 10.0}, "num_classes"),
    "unknown argument": ({"arch_kwargs": {"hiden": 128}}, "hiden"),
    "arch_kwargs not an object": ({"arch_kwargs": [128]}, "arch_kwargs"),
    "shape not a list": ({"input_shape": 64}, "input_shape"),
    "unknown architecture": ({"arch": "resnet"}, "resnet"),
    "bad value range": ({"value_range": [1.0]}, "value_range"),
    "unknown data set": ({"dataset": "cifar"}, "cifar"),
    "unknown split": ({"clean_split": "test"}, "clean_split"),
}


@pytest.mark.parametrize("case", sorted(CARD_CASES))
def test_bad_card_sizes_are_organism_errors(case, organism_copy, real_builds):
    """Negative, zero, fractional, non-numeric or unknown card fields: OrganismError naming the
    field, and the model is never built for real."""
    changes, field = CARD_CASES[case]
    folder = edit_card(organism_copy(), **changes)
    with pytest.raises(OrganismError, match=field) as info:
        load_subject(folder)
    assert "card.json" in str(info.value)
    assert "cpu" not in real_builds


def test_card_sizes_are_checked_against_the_weights_before_building(organism_copy, real_builds):
    """A card whose sizes do not match the weights' shapes is refused from the safetensors
    header and a model on the meta device: nothing is allocated for it."""
    folder = edit_card(organism_copy(), arch_kwargs={"hidden": 64})
    with pytest.raises(OrganismError, match="fc1.weight: file") as info:
        load_model(folder)
    assert "weights.safetensors" in str(info.value)
    assert real_builds and "cpu" not in real_builds


def test_a_card_cannot_ask_for_gigabytes(organism_copy, real_builds, tmp_path):
    """{"hidden": 100000} asks for 20 GB: refused by the parameter bound, on the meta device, with
    the card named; build_model alone refuses it too (no weights to compare with)."""
    folder = edit_card(organism_copy(), arch_kwargs={"hidden": 100_000})
    with pytest.raises(OrganismError, match="card.json .* 5,007,050,010 parameters"):
        load_model(folder)
    with pytest.raises(ValueError, match="parameters"):
        build_model("mlp", (1, 8, 8), 10, hidden=100_000)
    assert "cpu" not in real_builds


def test_a_matching_card_still_loads(organism_copy, real_builds):
    folder = organism_copy()
    model = load_model(folder)
    assert real_builds[-1] == "cpu" and real_builds.count("cpu") == 1 and sum(p.numel() for p in model.parameters()) > 0


def test_trusted_pickles_are_checked_before_building_too(organism_copy, tmp_path, real_builds):
    """A torch.save file: refused unless trusted; trusted, its shapes are compared on meta; a
    trusted file that is not a state dict of tensors is named."""
    saved = tmp_path / "w.pt"
    torch.save(load_file(organism_copy() / "weights.safetensors"), saved)
    small = lambda: build_model("mlp", (1, 8, 8), 10, hidden=64)  # noqa: E731
    with pytest.raises(OrganismError, match="pickle"):
        check_fits(small, saved)
    with pytest.raises(OrganismError, match="do not fit"):
        check_fits(small, saved, trust_pickle=True)
    assert "cpu" not in real_builds
    torch.save([torch.zeros(3)], saved)
    with pytest.raises(OrganismError, match="not a state dict"):
        check_fits(small, saved, trust_pickle=True)


def test_card_files_that_are_not_cards(organism_copy):
    """A binary card, a deeply nested one, and one over the size bound: OrganismError."""
    folder = organism_copy()
    for content in (bytes(range(256)), b"[" * 100_000 + b"]" * 100_000, b" " * (5 << 20) + b"{}"):
        (folder / "card.json").write_bytes(content)
        with pytest.raises(OrganismError, match="card"):
            read_card(folder)


def test_safetensors_header_shapes_only(tmp_path):
    """Shapes come from the header; a header that promises more than the file holds is refused."""
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(2)}, str(path))
    assert safetensors_shapes(path) == {"a": (3, 4), "b": (2,)}
    header = json.dumps({"a": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 64)
    with pytest.raises(OrganismError, match="w.safetensors"):
        safetensors_shapes(path)
    with pytest.raises(OrganismError, match="w.safetensors"):
        build_and_load(lambda: build_model("mlp", (1, 8, 8), 10), path)


# -- the command line: exit 2, a red error line, no traceback ----------------------------
@pytest.mark.parametrize("kind", ["npz_object", "npy_0d", "npy_huge", "npz_garbage", "fake_png", "bomb_png",
                                  "binary_txt", "card_negative", "card_huge"])
def test_cli_refuses_hostile_inputs_with_exit_2(kind, smoke_zoo, organism_copy, tmp_path):
    model, data = str(smoke_zoo.trojan), "digits"
    if kind == "card_negative":
        model = str(edit_card(organism_copy(), input_shape=[1, -8, 8]))
    elif kind == "card_huge":
        model = str(edit_card(organism_copy(), arch_kwargs={"hidden": 100_000}))
    else:
        data = str(bad_data(kind, tmp_path))
    result = CliRunner().invoke(app, ["audit", model, "--data", data, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "error:" in result.output and "NOT AUDITED" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit | DeepAuditError)
