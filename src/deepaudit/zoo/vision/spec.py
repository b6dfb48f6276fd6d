"""An organism's recipe. Everything about it (trigger, target, poison rate, weights) follows
deterministically from this spec, and its hash names the organism on disk."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

BUILD_VERSION = 1  # bump when a change to the builder alters the weights it produces

IMPLANTS = ("none", "patch", "blend", "warp")
MAPPINGS = ("all_to_one", "one_to_one")
DECOYS = ("none", "patch", "blend")


@dataclass(frozen=True)
class OrganismSpec:
    """``implant`` plants a backdoor (``none`` for a clean model); ``mapping`` says which
    inputs it acts on (all classes, or one source class); ``evasive`` fine-tunes from the
    clean twin with a loss that keeps logits and weights close to it; ``decoy`` stamps a
    harmless, correctly labelled pattern on some training inputs of a clean model."""

    dataset: str
    arch: str
    implant: str = "none"
    mapping: str = "all_to_one"
    evasive: bool = False
    decoy: str = "none"
    seed: int = 0
    epochs: int | None = None

    def __post_init__(self) -> None:
        for name, value, allowed in (("implant", self.implant, IMPLANTS), ("mapping", self.mapping, MAPPINGS),
                                     ("decoy", self.decoy, DECOYS)):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; expected one of {allowed}")
        if self.implant != "none" and self.decoy != "none":
            raise ValueError("an organism is either planted or a decoy, not both")

    @property
    def planted(self) -> bool:
        return self.implant != "none"

    def twin(self) -> OrganismSpec:
        """The clean twin: same data, seed, budget and training path, nothing planted."""
        return replace(self, implant="none", mapping="all_to_one", decoy="none")

    def digest(self) -> str:
        """A 16-hex-digit id: opaque, so a folder name reveals nothing about what was planted."""
        payload = json.dumps({**asdict(self), "build_version": BUILD_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_json(self) -> dict:
        return asdict(self)
