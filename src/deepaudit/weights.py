"""Reading and writing model weights without unpickling: safetensors by default."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from deepaudit.errors import OrganismError

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive (a pickle inside)
PICKLE_FIRST_BYTES = b"\x80(c]})NI"  # PROTO (protocol 2+), or a protocol 0/1 opening opcode


def looks_like_pickle(head: bytes) -> bool:
    """True for a raw pickle (any protocol) or a torch.save archive, judged by the first bytes."""
    return head.startswith(ZIP_MAGIC) or (len(head) > 0 and head[:1] in [bytes([b]) for b in PICKLE_FIRST_BYTES])


def save_weights(model: nn.Module, path: Path) -> None:
    """Save a model's state dict as safetensors (contiguous copies, deterministic order)."""
    state = {k: v.detach().contiguous().clone() for k, v in sorted(model.state_dict().items())}
    save_file(state, str(path))


def load_state_dict(path: Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Load a state dict from safetensors. Pickle-based files are refused unless
    ``trust_pickle`` is set, and even then only tensors are loaded (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise OrganismError(f"weights file not found: {path}")
    with path.open("rb") as f:
        head = f.read(4)
    if looks_like_pickle(head):
        if not trust_pickle:
            raise OrganismError(
                f"{path} is a pickle (torch.save) file; deepaudit never unpickles untrusted files. "
                "Save the weights with safetensors (safetensors.torch.save_file), or pass "
                "trust_pickle=True if you trust this file.")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # weights_only refuses code objects; report it, whatever the pickle held
            raise OrganismError(f"{path}: torch.load(weights_only=True) refused or failed: {exc}") from exc
        if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in state.items()):
            raise OrganismError(f"{path} holds a {type(state).__name__}, not a state dict of named tensors")
        return state
    try:
        return load_file(str(path))
    except (SafetensorError, json.JSONDecodeError, ValueError, OSError) as exc:
        raise OrganismError(f"weights file {path} is corrupt or not safetensors: {exc}") from exc


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes a safetensors file declares, from its header alone (the
    file is memory-mapped, no tensor is read); safetensors checks the header against the
    file's size, so the shapes are backed by bytes that are really there."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, ValueError, OSError) as exc:
        raise OrganismError(f"weights file {path} is corrupt or not safetensors: {exc}") from exc


def _check_fit(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]], source: str) -> None:
    """Refuse weights whose names or shapes differ from the model's, naming every difference."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [f"{k}: file {found[k]} vs model {v}" for k, v in expected.items() if k in found and found[k] != v]
    if missing or unexpected or wrong:
        raise OrganismError(f"weights in {source} do not fit the architecture: missing={missing} "
                            f"unexpected={unexpected} shape mismatches={wrong}")


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def weight_shapes(path: Path, trust_pickle: bool = False) -> dict[str, tuple[int, ...]]:
    """The names and shapes of the weights at ``path``: from a safetensors header alone, or from
    the tensors of a trusted pickle (refused, as always, unless ``trust_pickle``)."""
    path = Path(path)
    if not path.is_file():
        raise OrganismError(f"weights file not found: {path}")
    with path.open("rb") as f:
        pickled = looks_like_pickle(f.read(4))
    return _shapes(load_state_dict(path, trust_pickle)) if pickled else safetensors_shapes(path)


def check_fits(build: Callable[[], nn.Module], path: Path, trust_pickle: bool = False) -> None:
    """Refuse weights that the model ``build()`` makes would not take, before it is made: the
    model is built on the meta device (no memory) and its parameter names and shapes compared
    with the weights' (``weight_shapes``). Whatever sizes a card asks for, building the model
    afterwards allocates no more than the weights file itself holds."""
    found = weight_shapes(path, trust_pickle)
    with torch.device("meta"):
        skeleton = build()
    _check_fit(_shapes(skeleton.state_dict()), found, str(path))


def build_and_load(build: Callable[[], nn.Module], path: Path, trust_pickle: bool = False) -> nn.Module:
    """``build()`` the model and load the weights at ``path`` into it, once ``check_fits`` passed."""
    check_fits(build, path, trust_pickle)
    return load_into(build(), load_state_dict(path, trust_pickle), str(path))


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Load ``state`` into ``model``, turning key and shape mismatches into a clear error."""
    _check_fit(_shapes(model.state_dict()), _shapes(state), source)
    model.load_state_dict(state)
    return model
