"""Load the model under audit from any of the sources a user has: an organism or card folder
(card.json + weights.safetensors), a weights file with its card or a Python entry point
``module:function`` that builds the architecture, or a Hugging Face model folder or id.

Whatever the source, the result is an ``AuditedModel``: an ``nn.Module`` that maps a batch of
inputs to logits, and a card (input shape, classes, value range, layer names) filled in from
the source and, where the source does not say, from the clean data."""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepaudit.audit.hf import load_hf_model
from deepaudit.audit.model import AuditedModel, file_digest
from deepaudit.errors import OrganismError
from deepaudit.internals import module_names
from deepaudit.subject import CARD_FILE, WEIGHTS_FILE, card_builder, read_card
from deepaudit.weights import check_fits, load_into, load_state_dict
from deepaudit.zoo.folder import TRUTH_FILE, truth_path

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def load_entry_point(spec: str) -> nn.Module:
    """Call ``module:function`` (or ``path/to/file.py:function``) and return its nn.Module.
    This runs the user's own code: they named it on the command line."""
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise OrganismError(f"entry point {spec!r} must look like 'package.module:function' or 'file.py:function'")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise OrganismError(f"entry point file not found: {path}")
            spec_ = importlib.util.spec_from_file_location(f"deepaudit_user_{path.stem}", path)
            if spec_ is None or spec_.loader is None:
                raise OrganismError(f"cannot load the entry point file {path}")
            module = importlib.util.module_from_spec(spec_)
            spec_.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except OrganismError:
        raise
    except Exception as exc:  # the user's module may fail in any way while importing
        raise OrganismError(f"cannot import the entry point module {module_name!r}: {type(exc).__name__}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise OrganismError(f"{module_name!r} has no callable {func_name!r}")
    try:
        model = func()
    except Exception as exc:
        raise OrganismError(f"entry point {spec!r} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise OrganismError(f"entry point {spec!r} returned {type(model).__name__}, not a torch nn.Module")
    return model


def _state(path: Path, trust_pickle: bool) -> dict[str, torch.Tensor]:
    """Weights as tensors; a trusted pickle is still read with ``weights_only=True``, and one
    that holds anything but tensors is refused with a clear error."""
    try:
        return load_state_dict(path, trust_pickle)
    except OrganismError:
        raise
    except Exception as exc:  # torch.load's refusals: UnpicklingError, RuntimeError, ...
        raise OrganismError(f"{path} could not be read even as a trusted pickle (only tensors are allowed, "
                            f"weights_only=True): {exc}") from exc


def _load_weights(model: nn.Module, weights: Path, trust_pickle: bool, notes: list[str]) -> nn.Module:
    """Load the weights file into ``model``; a tensor stored with another dtype than the model's
    is cast, and ``notes`` says so (the report shows it)."""
    state = _state(weights, trust_pickle)
    expected = model.state_dict()
    cast: dict[tuple[torch.dtype, torch.dtype], list[str]] = {}
    for name, tensor in state.items():
        if name in expected and tensor.dtype != expected[name].dtype:
            cast.setdefault((tensor.dtype, expected[name].dtype), []).append(name)
    for (stored, used), names in cast.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        notes.append(f"{weights.name}: {len(names)} tensors stored as {str(stored).removeprefix('torch.')} were cast "
                     f"to the model's {str(used).removeprefix('torch.')} ({shown})")
    return load_into(model, state, str(weights))


def _card_model(card: dict[str, Any], weights: Path, trust_pickle: bool, notes: list[str]) -> nn.Module:
    build = card_builder(card)
    check_fits(build, weights, trust_pickle)  # on the meta device: the card's sizes against the weights' shapes
    return _load_weights(build(), weights, trust_pickle, notes)


def _read_card_file(path: Path) -> dict[str, Any]:
    try:
        return read_card(path.parent) if path.name == CARD_FILE else json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise OrganismError(f"cannot read the card {path}: {exc}") from exc


def load_audited_model(spec: str, card: Path | None = None, arch: str | None = None,
                       trust_pickle: bool = False, trust_remote_code: bool = False,
                       base: str | None = None) -> AuditedModel:
    """Resolve ``spec`` (a folder, a weights file, or a Hugging Face id) into an AuditedModel. Its
    source records a digest of every file that defines the model (weights, card, entry-point code),
    which the stage cache's fingerprint covers. ``base`` (a causal language model's base) is
    loaded and checked against the model's architecture."""
    audited = _load(spec, card, arch, trust_pickle, trust_remote_code)
    if base is not None:
        if audited.family != "lm":
            raise OrganismError(f"--base is for a causal language model fine-tuned from it; {spec} is a "
                                f"{audited.family} model")
        from deepaudit.audit.language import load_base

        audited.base = load_base(base, audited.lm)
        audited.source["base"] = audited.base.source
    return audited


def _load(spec: str, card: Path | None, arch: str | None, trust_pickle: bool, trust_remote_code: bool) -> AuditedModel:
    path = Path(spec)
    if path.is_dir() and _card_kind(path) == "lm":
        from deepaudit.audit.language import load_lm_organism_folder

        return load_lm_organism_folder(path)
    if path.is_file() and path.suffix == ".gguf":
        from deepaudit.audit.language import load_language_model

        return load_language_model(str(path), local=True)
    if path.is_dir() and (path / CARD_FILE).is_file() and (path / WEIGHTS_FILE).is_file() and arch is None:
        public = read_card(path)
        notes: list[str] = []
        model = _card_model(public, path / WEIGHTS_FILE, trust_pickle, notes)
        organism = path if truth_path(path).is_file() or (path / TRUTH_FILE).is_file() else None
        kind = "organism" if organism else "card_folder"
        return AuditedModel(model, _public_fields(public, model), {"kind": kind, "path": str(path.resolve()),
                            "sha256": file_digest(path / WEIGHTS_FILE), "card_sha256": file_digest(path / CARD_FILE)},
                            organism_folder=organism, notes=notes)
    if path.is_dir() and (path / "config.json").is_file():
        return load_hf_model(str(path), trust_pickle, local=True, trust_remote_code=trust_remote_code)
    if path.is_file() and path.suffix in WEIGHT_SUFFIXES:
        return _load_weights_file(path, card, arch, trust_pickle)
    if path.exists():
        raise OrganismError(f"{path} is neither a model folder (card.json + weights.safetensors, or a Hugging Face "
                            f"config.json) nor a weights file ({', '.join(WEIGHT_SUFFIXES)})")
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return load_hf_model(spec, trust_pickle, local=False, trust_remote_code=trust_remote_code)
    raise OrganismError(f"model {spec!r} not found: not a file, not a folder, not a Hugging Face id (owner/name)")


def _card_kind(folder: Path) -> str | None:
    """The ``kind`` field of a folder's card.json (``lm`` for a language-model organism), if any."""
    try:
        card = json.loads((folder / CARD_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return card.get("kind") if isinstance(card, dict) else None


def _load_weights_file(path: Path, card: Path | None, arch: str | None, trust_pickle: bool) -> AuditedModel:
    card = card or (path.parent / CARD_FILE if (path.parent / CARD_FILE).is_file() else None)
    source: dict[str, Any] = {"kind": "weights", "path": str(path.resolve()), "sha256": file_digest(path)}
    if card is not None:
        source.update(card=str(Path(card).resolve()), card_sha256=_card_digest(Path(card)))
    notes: list[str] = []
    if arch is not None:
        model = _load_weights(load_entry_point(arch), path, trust_pickle, notes)
        public = _read_card_file(Path(card)) if card else {}
        source.update(entry_point=arch, code_sha256=_entry_point_digest(arch))
        return AuditedModel(model, _public_fields(public, model), source, notes=notes)
    if card is None:
        raise OrganismError(f"{path} holds weights only; give the architecture with --card card.json "
                            "or --arch module:function")
    public = _read_card_file(Path(card))
    missing = [k for k in ("arch", "input_shape", "num_classes") if k not in public]
    if missing:
        raise OrganismError(f"card {card} lacks the fields {missing} needed to rebuild the architecture")
    model = _card_model(public, path, trust_pickle, notes)
    return AuditedModel(model, _public_fields(public, model), source, notes=notes)


def _card_digest(card: Path) -> str:
    try:
        return file_digest(card)
    except OSError as exc:
        raise OrganismError(f"cannot read the card {card}: {exc}") from exc


def _entry_point_digest(spec: str) -> str | None:
    """SHA-256 of the file that defines the entry point (after it was imported), so that an edit
    of the architecture's code is a different model for the stage cache."""
    module_name = spec.partition(":")[0]
    if module_name.endswith(".py"):
        return file_digest(Path(module_name))
    found = importlib.util.find_spec(module_name)
    origin = found.origin if found is not None else None
    return file_digest(Path(origin)) if origin and Path(origin).is_file() else None


def _public_fields(card: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """The card fields the audit uses (anything else in a card is ignored)."""
    keep = ("arch", "arch_kwargs", "dataset", "task", "input_shape", "num_classes", "value_range", "feature_layer")
    out = {k: card[k] for k in keep if k in card}
    out["layers"] = module_names(model)
    return out


def complete_card(audited: AuditedModel, x: torch.Tensor, logits: torch.Tensor) -> dict[str, Any]:
    """Fill the card fields the source did not give from the clean data and the model's outputs."""
    from deepaudit.models import penultimate_layer

    card = dict(audited.card)
    card.setdefault("input_shape", list(x.shape[1:]))
    card.setdefault("num_classes", int(logits.shape[-1]))
    if audited.modality == "continuous":
        card.setdefault("value_range", [float(x.min()), float(x.max())])
    else:
        card.setdefault("value_range", [0.0, 0.0])
    if "feature_layer" not in card:
        try:
            card["feature_layer"] = penultimate_layer(audited.model)
        except ValueError:
            card["feature_layer"] = None
    return card
