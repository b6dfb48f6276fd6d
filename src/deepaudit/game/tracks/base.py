"""What a track is: one file per track (``deepaudit.game.tracks.<name>``), registered with
``@register_track``. A track says which tools it applies to (the roles whose answers it scores;
the organism families are those whose kit lists the track and has what the track reads,
``kit_needs``, optionally narrowed by ``families``), scores one tool's answer on one organism
against that organism's kit (the referee's side), aggregates the scores of many organisms into metrics of one shape
(``{"value", "ci_low", "ci_high", "n"}``, bootstrap 95% CIs), and declares the leaderboard
columns that show them. A track written once serves every family it names, through the kit's
methods (the remove track calls ``kit.clean_accuracy`` and ``kit.behaviour_rate`` whether the
model classifies digits or answers questions)."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from deepaudit.game.answer import Answer
from deepaudit.metrics import Metric, mean_with_ci
from deepaudit.registry import Registry
from deepaudit.zoo import Kit

Cell = dict[str, Any]  # one stored cell: organism_id, labels, answer, scores (this track's)


@dataclass(frozen=True)
class Column:
    """A leaderboard column: its header, the metric it shows, and whether to print the CI."""

    header: str
    metric: str
    ci: bool = False
    scale: float = 1.0  # e.g. 100 to show a share as points


class Track(ABC):
    """One scored track (see the module docstring)."""

    name: ClassVar[str]
    roles: ClassVar[tuple[str, ...]]
    families: ClassVar[tuple[str, ...] | None] = None  # None: every family whose kit lists the track
    kit_needs: ClassVar[tuple[str, ...]] = ()  # the kit's attributes and methods it reads
    planted_only: ClassVar[bool] = False  # scored only on organisms with a planted behaviour
    table: ClassVar[str]  # the leaderboard table its columns go to
    order: ClassVar[int] = 100  # where its columns and table come on the leaderboard
    columns: ClassVar[tuple[Column, ...]] = ()
    derived_from: ClassVar[str | None] = None  # a track with no cells of its own: it scores this track's answers

    def applies(self, kit: Kit) -> bool:
        """Does this track score tools on this organism? (The kit lists it, and has what it reads.)"""
        if self.name not in kit.tracks:
            return False
        absent = object()  # looked up without running properties (a twin's kit has no true target to read)
        if missing := [need for need in self.kit_needs if inspect.getattr_static(kit, need, absent) is absent]:
            raise TypeError(f"the {type(kit).__name__} lists the {self.name!r} track but lacks {missing}, "
                            "which the track reads")
        return kit.planted or not self.planted_only

    @abstractmethod
    def score(self, answer: Answer, kit: Kit, seed: int) -> dict[str, Any] | None:
        """This track's scores of one answer on one organism (None: nothing to score)."""

    def prepare(self, cells: Sequence[Cell], seed: int) -> None:  # noqa: B027 (an optional hook)
        """Scores that need all of a tool's organisms at once, filled in before slicing."""

    @abstractmethod
    def aggregate(self, cells: Sequence[Cell], seed: int) -> dict[str, Metric]:
        """Metrics over the organisms of ``cells`` (one tool's cells of this track)."""

    def shown(self, metrics: dict[str, Metric]) -> tuple[Column, ...]:
        """The columns to show for these metrics (a track with data-dependent metrics overrides it)."""
        return self.columns

    def references(self, cells: Sequence[Cell], seed: int) -> dict[str, dict[str, Metric]]:
        """Reference rows the referee measured itself (e.g. the model's own answers), by label."""
        return {}


def mean_of(cells: Sequence[Cell], key: str, seed: int) -> Metric:
    """The mean of a per-organism score over the cells that have it, with its bootstrap CI."""
    return mean_with_ci([float(c["scores"][key]) for c in cells if c["scores"].get(key) is not None], seed)


TRACKS: Registry[Track] = Registry("track", ("deepaudit.game.tracks",))
T = TypeVar("T", bound=type[Track])


def register_track(cls: T) -> T:
    """Class decorator: register an instance of the track under its ``name``."""
    TRACKS.add(cls.name, cls())
    return cls


def tracks_for(role: str, family: str) -> list[Track]:
    """The tracks that score a role's answers on a family's organisms (derived tracks aside:
    they are scored from the stored cells of the track they read, ``derived_cells``)."""
    return [t for t in TRACKS.values() if role in t.roles and (t.families is None or family in t.families)
            and t.derived_from is None]


def derived_cells(cells: Sequence[Cell]) -> list[Cell]:
    """The cells of the derived tracks: copies of the stored cells of the track each one reads."""
    return [{**cell, "track": track.name, "scores": dict(cell["scores"])} for track in TRACKS.values()
            if track.derived_from for cell in cells if cell["track"] == track.derived_from
            and (track.families is None or cell["labels"]["family"] in track.families)]
