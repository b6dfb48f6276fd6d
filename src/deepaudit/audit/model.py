"""The model under audit, whatever its source, and how its files are fingerprinted."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn


@dataclass
class AuditedModel:
    """The model under audit. ``family`` is the organism family whose tools audit it: ``vision``
    (a classifier; ``modality`` ``continuous`` for float tensors such as images or signals, or
    ``tokens`` for a text classifier's token ids) or ``lm`` (a causal language model, in ``lm``,
    with the ``base`` it was fine-tuned from when the user has it); ``card`` may lack what only
    the data can tell; ``notes`` says what loading changed on the way (a cast), for the report."""

    model: nn.Module
    card: dict[str, Any]
    source: dict[str, Any]
    modality: str = "continuous"
    tokenizer: Any = None
    organism_folder: Path | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)
    family: str = "vision"
    lm: Any = None  # deepaudit.lm.loader.LanguageModel for the lm family (transformers loads only then)
    base: Any = None


def file_digest(path: Path) -> str:
    """SHA-256 of a file, or of every file in a folder (sorted by name)."""
    h = hashlib.sha256()
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
