"""What crosses the seal between the referee and the tools' worker (``deepaudit.game.worker``):
plain data only. A message is a JSON document whose tensors and arrays sit beside it in one
safetensors file (``pack`` / ``unpack``); nothing is ever unpickled, so a tool cannot hand the
referee code to run. A model a tool returns (a remover's, an editor's) crosses as the tensors
it changed and the residual-stream interventions it attached (``model_change``); the referee
rebuilds it on its own copy of the model (``rebuild``)."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from deepaudit.errors import DeepAuditError
from deepaudit.lm.interventions import ResidualAblation
from deepaudit.lm.loader import LanguageModel

TENSOR, ARRAY = "__tensor__", "__array__"


class WireError(DeepAuditError):
    """A message that cannot cross the seal: an object that is not plain data, or a broken file."""


def _encode(obj: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {TENSOR: key}
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise WireError(f"{where}: an object array cannot cross the seal")
        key = str(len(tensors))
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {ARRAY: key}
    if isinstance(obj, Mapping):
        if not all(isinstance(k, str) for k in obj):
            raise WireError(f"{where}: only string keys can cross the seal")
        return {k: _encode(v, tensors, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise WireError(f"{where}: a {type(obj).__name__} cannot cross the seal (plain data, arrays and tensors only)")


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {TENSOR}:
            return tensors[obj[TENSOR]]
        if set(obj) == {ARRAY}:
            return tensors[obj[ARRAY]].numpy()
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def write(path: Path, message: Any) -> None:
    """Write ``message`` as ``path`` (JSON) and ``path.safetensors`` (its tensors), the JSON last."""
    tensors: dict[str, torch.Tensor] = {}
    document = _encode(message, tensors, "message")
    save_file(tensors, str(path.with_suffix(".safetensors")))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document))
    tmp.replace(path)


def read(path: Path) -> Any:
    """A message written by ``write``."""
    try:
        document = json.loads(path.read_text())
        tensors = load_file(str(path.with_suffix(".safetensors")))
        return _decode(document, tensors)
    except (OSError, ValueError, KeyError) as exc:
        raise WireError(f"{path.name}: not a readable message: {exc}") from exc


def roundtrip(message: Any) -> Any:
    """``message`` as the other side of the seal would read it (in memory; for in-process runs)."""
    tensors: dict[str, torch.Tensor] = {}
    return _decode(_encode(message, tensors, "message"), tensors)


def _module(model: nn.Module | LanguageModel) -> nn.Module:
    return model.model if isinstance(model, LanguageModel) else model


def model_change(original: nn.Module | LanguageModel, edited: object) -> dict[str, Any]:
    """What a tool changed in ``original`` to make ``edited``: the tensors that differ, by name,
    and (language models) the residual-stream interventions attached. A model with other
    parameter names or shapes is refused: the referee scores edits of the audited model."""
    if not isinstance(edited, (nn.Module, LanguageModel)) or isinstance(edited, LanguageModel) != isinstance(
            original, LanguageModel):
        raise WireError(f"a tool must return a model like the one it audits ({type(original).__name__}), "
                        f"got {type(edited).__name__}")
    own, new = _module(original).state_dict(), _module(edited).state_dict()
    if stray := sorted(k for k in new if k not in own or own[k].shape != new[k].shape):
        raise WireError(f"the returned model has parameters the audited model lacks or shapes it differs in: {stray[:3]}")
    changed = {k: v for k, v in new.items() if not torch.equal(v, own[k])}
    edits = getattr(edited, "interventions", ())
    return {"state": changed, "interventions": [e.to_json() for e in edits]}


def rebuild(original: nn.Module | LanguageModel, change: Mapping[str, Any]) -> Any:
    """A copy of the referee's ``original`` with a tool's ``model_change`` applied."""
    state = dict(change.get("state") or {})
    own = _module(original).state_dict()
    if stray := sorted(k for k, v in state.items() if k not in own or tuple(own[k].shape) != tuple(v.shape)):
        raise WireError(f"a model change names parameters the model lacks or shapes it differs in: {stray[:3]}")
    edited = copy.deepcopy(original)
    _module(edited).load_state_dict(state, strict=False)
    interventions = [ResidualAblation.from_json(e) for e in change.get("interventions") or []]
    if interventions:
        if not isinstance(edited, LanguageModel):
            raise WireError("residual-stream interventions apply to language models only")
        edited = edited.with_interventions(interventions)
    return edited
