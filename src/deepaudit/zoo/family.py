"""Organism families (vision, lm, training, and whatever comes next) plug into the one game
through one adapter each, registered with ``@register_family`` beside the family's code:

- a suite's entries become specs (``specs``), built and checked into organism folders
  (``build``), in dependency order (``level``);
- ``open`` gives the referee one organism: fresh public subjects for the tools (``subject``),
  all sharing the organism's findings, and the kit on the truth side (``kit``): the labels the
  leaderboard slices by, the tracks that apply, and the referee's own measurements (clean
  accuracy, behaviour rate under the true trigger, the unit pool and how to ablate it, the
  flagged inputs), each a method the tracks that apply to the family call.

Families differ; the game does not."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from deepaudit.findings import Findings
from deepaudit.registry import Registry
from deepaudit.zoo.folder import BuildResult, lookup


class Spec(Protocol):
    """An organism's recipe: everything about it follows from it, and its digest names it."""

    def digest(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass
class Kit:
    """The referee's side of one organism. ``labels``: what the leaderboard scores and slices by
    (``planted``; ``pair``, the twin group; family-specific properties; the referee adds
    ``family``); ``tracks``: the tracks that apply to this organism. Families subclass it with the
    measurements their tracks read (each track's ``kit_needs``)."""

    truth: dict[str, Any]
    labels: dict[str, Any]
    tracks: frozenset[str]
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def planted(self) -> bool:
        return bool(self.labels["planted"])

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` the first time ``key`` is asked for on this organism, the same value after:
        what several tools' cells of one organism share (held-out inputs, random-ablation baselines)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


class Organism(ABC):
    """One organism opened by the referee for one game job: subjects and the kit. A subject, of
    any family, has ``family`` (the family's name), ``findings`` and ``forward_passes``."""

    def __init__(self, folder: Path, seed: int, budget: int):
        self.folder, self.seed, self.budget = Path(folder), seed, budget
        self.findings = Findings(seed=seed, subject_factory=self.fresh_subject)

    @abstractmethod
    def fresh_subject(self) -> Any:
        """A new public subject of this organism (its own cost meter, no findings)."""

    def subject(self) -> Any:
        """A fresh public subject that shares the organism's findings: what one tool is handed."""
        subject = self.fresh_subject()
        subject.findings = self.findings
        return subject

    @cached_property
    def kit(self) -> Kit:
        return self.make_kit()

    @abstractmethod
    def make_kit(self) -> Kit:
        """Read the sealed truth and prepare the referee's measurements."""


class Family(ABC):
    """The adapter of one organism family (see the module docstring)."""

    name: ClassVar[str]
    default_budget: ClassVar[int]  # trusted examples per subject
    slices: ClassVar[tuple[str, ...]] = ()  # labels a leaderboard may slice by
    context: ClassVar[tuple[str, ...]] = ()  # labels a slice's clean organisms must share with it

    @abstractmethod
    def specs(self, suite: dict[str, Any], seed: int) -> list[Spec]:
        """Every organism of a suite (its parsed TOML) for a seed: planted ones, twins, decoys."""

    def level(self, spec: Spec) -> int:
        """Build order: specs of a lower level are built first (a model fine-tuned from another)."""
        return 0

    def wanted(self, spec: Spec, earlier: Sequence[tuple[Spec, BuildResult]]) -> bool:
        """Whether ``spec`` is still to be built, given what the lower levels gave (``earlier``):
        a spare drawn to replace an organism that failed its build check is wanted only then."""
        return True

    @abstractmethod
    def build(self, spec: Spec, out: Path, store: Path) -> BuildResult:
        """Build and check ``spec`` into ``out/<id>`` unless it is already there or was dropped;
        training runs may record their monitor in the results ``store``."""

    def lookup(self, spec: Spec, out: Path) -> BuildResult:
        """What an earlier build of ``spec`` left in ``out`` (``missing`` if nothing)."""
        return lookup(out, spec.digest()) or BuildResult(spec.digest(), "missing", None)

    @abstractmethod
    def open(self, folder: Path, seed: int, budget: int, settings: Mapping[str, Any]) -> Organism:
        """The organism in ``folder`` for a game cell with this seed and trusted budget;
        ``settings`` are the suite's ``[referee]`` table (sizes of the referee's own sets)."""

    @abstractmethod
    def labels(self, truth: dict[str, Any]) -> dict[str, Any]:
        """What the leaderboard scores and slices an organism by (``planted``, ``pair``, the
        family's ``slices``), read from its sealed truth: the referee's side only."""

    def describe(self, truth: dict[str, Any]) -> dict[str, Any]:
        """A few facts of a built organism's truth, for the zoo's build table."""
        return {}


FAMILIES: Registry[Family] = Registry("family", ("deepaudit.zoo",))
F = TypeVar("F", bound=type[Family])


def register_family(cls: F) -> F:
    """Class decorator: register an instance of the family adapter under its ``name``."""
    FAMILIES.add(cls.name, cls())
    return cls


def family(name: str) -> Family:
    return FAMILIES.get(name)

