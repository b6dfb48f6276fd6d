"""Reading and writing model weights without unpickling: safetensors by default."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
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
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # weights_only refuses code objects; report it, whatever the pickle held
            raise OrganismError(f"{path}: torch.load(weights_only=True) refused or failed: {exc}") from exc
    try:
        return load_file(str(path))
    except (SafetensorError, json.JSONDecodeError, ValueError, OSError) as exc:
        raise OrganismError(f"weights file {path} is corrupt or not safetensors: {exc}") from exc


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Load ``state`` into ``model``, turning key and shape mismatches into a clear error."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise OrganismError(f"weights in {source} do not fit the architecture: missing={missing} "
                            f"unexpected={unexpected} shape mismatches={wrong}")
    model.load_state_dict(state)
    return model
