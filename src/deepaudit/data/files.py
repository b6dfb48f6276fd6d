"""Reading a user's data files without trusting them: ``.npy``/``.npz`` arrays (never unpickled,
and never allocated from a header that the file's bytes do not back), folders of images (each
image's pixel count checked from its header before it is decoded, so a decompression bomb is
refused unopened) and UTF-8 text lines. Every problem is a DataError naming the file."""

from __future__ import annotations

import math
import tokenize
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from deepaudit.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
TEXT_SUFFIX = ".txt"
X_KEYS, Y_KEYS = ("x", "inputs", "data", "images"), ("y", "labels", "targets")
NUMERIC_KINDS = "fiub"  # float, signed and unsigned integer, bool
MAX_ARRAY_BYTES = 2 << 30  # one array, or all images together (the audit keeps --max-inputs of them)
MAX_IMAGE_PIXELS = 1 << 25  # one image (about 5,800 x 5,800), below PIL's own bomb limit
MAX_TEXT_BYTES = 64 << 20  # all text files together
MAX_LABEL_DIGITS = 9  # a label sub-folder's name, as an integer
MAX_AXES = 8  # inputs are (N, C, H, W) at most, with room to spare
CHUNK = 16 << 20  # array data is read in chunks of this many bytes


# -- arrays --------------------------------------------------------------------------------
def _read_header(fp: IO[bytes], source: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from a ``.npy`` header (numpy's own parser, which reads
    at most a bounded header and evaluates only literals)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise DataError(f"{source} is a .npy file of version {version}; deepaudit reads versions 1.0 and 2.0")
    except (ValueError, TypeError, SyntaxError, tokenize.TokenError, RecursionError, MemoryError, EOFError) as exc:
        # numpy parses the header with tokenize and ast.literal_eval, which fail in all these ways
        raise DataError(f"{source} is not a valid .npy array: {type(exc).__name__}: {exc}") from exc
    return shape, fortran, dtype


def _read_array(fp: IO[bytes], available: int, source: str) -> np.ndarray:
    """One array from ``fp`` (positioned at a ``.npy`` header) whose data may occupy at most
    ``available`` bytes: the header's shape times item size is checked against that before
    anything is allocated, and objects (pickles) are refused from the header's dtype."""
    start = fp.tell()
    shape, fortran, dtype = _read_header(fp, source)
    if dtype.hasobject:
        raise DataError(f"{source} holds Python objects (a pickle); deepaudit reads plain numeric arrays only")
    if dtype.kind not in NUMERIC_KINDS:  # structured and sub-array dtypes are kind "V"
        raise DataError(f"{source} has dtype {dtype}; deepaudit reads plain numeric arrays only")
    if len(shape) > MAX_AXES or any(s < 0 for s in shape):
        raise DataError(f"{source} declares the shape {shape}; inputs have at most {MAX_AXES} axes, none negative")
    nbytes = math.prod(shape) * dtype.itemsize
    left = available - (fp.tell() - start)
    if nbytes > left:
        raise DataError(f"{source} declares an array of shape {shape} and dtype {dtype} ({nbytes:,} bytes), "
                        f"but holds only {max(left, 0):,} bytes of data: it is truncated or crafted")
    if nbytes > MAX_ARRAY_BYTES:
        raise DataError(f"{source} holds an array of {nbytes:,} bytes; deepaudit reads at most {MAX_ARRAY_BYTES:,} "
                        f"(the audit uses --max-inputs inputs: keep a sample)")
    buffer = bytearray()  # grown as the data arrives: a member that claims more than it holds costs nothing
    while len(buffer) < nbytes:
        chunk = fp.read(min(nbytes - len(buffer), CHUNK))
        if not chunk:
            raise DataError(f"{source} declares {nbytes:,} bytes of data but ends after {len(buffer):,}: "
                            f"it is truncated")
        buffer += chunk
    flat = np.frombuffer(buffer, dtype=dtype)
    array = flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    source = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {n.removesuffix(".npy"): n for n in archive.namelist() if n.endswith(".npy")}
            x_key, y_key = _pick_keys(list(members), source)
            arrays = []
            for key in (x_key, y_key) if y_key else (x_key,):
                info = archive.getinfo(members[key])
                with archive.open(info) as fp:
                    arrays.append(_read_array(fp, info.file_size, f"{source} (array {key!r})"))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError, RuntimeError, ValueError,
            EOFError) as exc:  # a damaged or crafted archive: bad directory, compression, CRC or encryption
        raise DataError(f"{source} is not a valid .npz (zip) archive of arrays: {exc}") from exc
    return arrays[0], (arrays[1] if y_key else None)


def _pick_keys(keys: list[str], source: str) -> tuple[str, str | None]:
    if not keys:
        raise DataError(f"{source} holds no arrays; name the inputs one of {X_KEYS} (labels: one of {Y_KEYS})")
    x_key = next((k for k in X_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
    if x_key is None:
        raise DataError(f"{source} has arrays {keys}; name the inputs one of {X_KEYS} (labels: one of {Y_KEYS})")
    return x_key, next((k for k in Y_KEYS if k in keys), None)


def read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs, and labels when an ``.npz`` names them, from a ``.npy`` or ``.npz`` file, read
    without numpy's loader: headers are judged before any data is, and nothing is unpickled."""
    path = Path(path)
    y: np.ndarray | None = None
    try:
        if path.suffix == ".npy":
            with path.open("rb") as fp:
                x = _read_array(fp, path.stat().st_size, str(path))
        else:
            x, y = _read_npz(path)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if x.ndim == 0:
        raise DataError(f"{path} holds a single number (a 0-d array), not a batch of inputs")
    if y is not None and (y.ndim != 1 or y.dtype.kind not in NUMERIC_KINDS):
        raise DataError(f"the labels in {path} must be one number per input, got shape {y.shape} "
                        f"and dtype {y.dtype}")
    return x, y


# -- folders -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FolderFiles:
    """A data folder's files: ``kind`` ("images" or "text"), the files read, the files ignored."""

    kind: str
    files: list[Path]
    ignored: list[Path]


def sort_folder(folder: Path) -> FolderFiles:
    """Images if the folder holds any (every other file is ignored), else ``.txt`` files."""
    folder = Path(folder)
    everything = sorted(p for p in folder.rglob("*") if p.is_file())
    images = [p for p in everything if p.suffix.lower() in IMAGE_SUFFIXES]
    texts = [p for p in everything if p.suffix.lower() == TEXT_SUFFIX]
    kind, files = ("images", images) if images else ("text", texts)
    if files:
        used = set(files)
        return FolderFiles(kind, files, [p for p in everything if p not in used])
    raise DataError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}) and no {TEXT_SUFFIX} files")


def _read_image(path: Path, shape: list[int] | None) -> np.ndarray:
    from PIL import Image

    channels = shape[0] if shape else 3
    try:
        with warnings.catch_warnings():  # the size is judged below, before any pixel is decoded
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened:
            width, height = opened.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(f"the image {path} declares {width} x {height} = {width * height:,} pixels, more than "
                                f"{MAX_IMAGE_PIXELS:,} (a decompression bomb?)")
            img = opened.convert("L" if channels == 1 else "RGB")
            if shape:
                img = img.resize((shape[2], shape[1]))
            a = np.asarray(img, dtype=np.float32) / 255.0
    except DataError:
        raise
    except Exception as exc:  # PIL's decoders raise almost anything on a crafted file (bombs included)
        raise DataError(f"cannot read the image {path}: {type(exc).__name__}: {exc}") from exc
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _image_shape(shape: object) -> bool:
    """Whether ``shape`` is (1 or 3 channels, height, width) with a bounded pixel count."""
    return (isinstance(shape, list | tuple) and len(shape) == 3 and shape[0] in (1, 3)
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
            and shape[1] * shape[2] <= MAX_IMAGE_PIXELS)


def read_images(files: list[Path], shape: list[int] | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Images as floats in [0, 1], ``(N, C, H, W)``, resized to the model's ``shape`` (C, H, W)
    when known; labels from the images' parent folders when every one is named by an integer."""
    if shape is not None and not _image_shape(shape):
        raise DataError(f"the model's inputs have shape {shape!r}, not images (channels, height, width) with 1 or 3 "
                        f"channels and at most {MAX_IMAGE_PIXELS:,} pixels")
    arrays, total = [], 0
    for f in files:
        arrays.append(_read_image(f, shape))
        total += arrays[-1].nbytes
        if total > MAX_ARRAY_BYTES:
            raise DataError(f"the images up to {f} take more than {MAX_ARRAY_BYTES:,} bytes; keep a sample "
                            f"(the audit uses --max-inputs inputs)")
    if not arrays:
        return np.zeros((0,), np.float32), None
    odd = next((i for i, a in enumerate(arrays) if a.shape != arrays[0].shape), None)
    if odd is not None:
        raise DataError(f"the images {files[0]} {arrays[0].shape} and {files[odd]} {arrays[odd].shape} have different "
                        f"sizes; resize them, or give the model's input shape in its card")
    parents = [f.parent.name for f in files]
    numbered = all(p.isascii() and p.isdigit() and len(p) <= MAX_LABEL_DIGITS for p in parents)
    labels = np.array([int(p) for p in parents], dtype=np.int64) if numbered else None
    return np.stack(arrays), labels


# -- text ----------------------------------------------------------------------------------
def read_text_lines(files: list[Path]) -> list[str]:
    """The non-empty lines (stripped) of UTF-8 text files; binary files are refused by name."""
    lines: list[str] = []
    total = 0
    for f in files:
        try:
            total += f.stat().st_size
            if total > MAX_TEXT_BYTES:
                raise DataError(f"the text files up to {f} hold more than {MAX_TEXT_BYTES:,} bytes; keep a sample")
            raw = f.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read {f}: {exc}") from exc
        if b"\0" in raw:
            raise DataError(f"{f} holds NUL bytes: it is a binary file, not text lines")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{f} is not UTF-8 text (a binary file?): {exc}") from exc
        lines += [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines
