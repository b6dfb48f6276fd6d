"""The referee: one organism, every tool asked for it. The organism is opened once (its family
loads the model, draws the trusted data, and keeps the findings tools share); each tool gets a
fresh public subject and answers for each of its roles that a track scores on this organism;
then the tracks score the answers against the kit. A tool's cost is its own: wall seconds and
examples forwarded while it ran, less the seconds spent computing shared findings (charged once,
to the finding, and listed beside each tool that used it) and the referee's own scoring.

``run_organism`` is one executor job: it returns plain data (the cells), and the driver alone
writes the store."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepaudit.game.answer import Answer, Stopwatch
from deepaudit.game.roles import ASK
from deepaudit.game.tracks.base import Track, tracks_for
from deepaudit.tools.findings import shared
from deepaudit.tools.registry import ToolSpec, tool_spec
from deepaudit.zoo import Organism, family
from deepaudit.zoo.folder import fixed_threads


@dataclass(frozen=True)
class ToolRun:
    """A tool to run: its name, the parameters set explicitly, and the digest of all of them."""

    name: str
    overrides: Mapping[str, Any]
    digest: str

    @classmethod
    def of(cls, name: str, overrides: Mapping[str, Any] | None = None) -> ToolRun:
        spec = tool_spec(name)
        return cls(name, dict(overrides or {}), spec.digest(spec.params(**(overrides or {}))))


@dataclass
class Outcome:
    """One tool on one organism: its status, the tracks' scores, its answer and cost."""

    tool: str
    digest: str
    status: str  # done, skipped (nothing to score here) or error
    scores: dict[str, dict[str, Any]]
    answer: dict[str, Any]
    labels: dict[str, Any]
    wall_s: float = 0.0
    forward_passes: int = 0
    shared: dict[str, Any] | None = None
    error: str | None = None


def unmet_needs(spec: ToolSpec, subject: Any) -> list[str]:
    """What the tool needs that this subject lacks (labels, the base model)."""
    missing = []
    if "labels" in spec.needs and getattr(subject, "trusted_labels", 0) is None:
        missing.append("labels on the trusted data")
    if "base_model" in spec.needs and getattr(subject, "base", 0) is None:
        missing.append("the base model")
    return missing


def ask_and_score(organism: Organism, run: ToolRun, seed: int, family_name: str) -> Outcome:
    """Run one tool on an opened organism of ``family_name`` and score its answers."""
    spec, kit = tool_spec(run.name), organism.kit
    labels = {**kit.labels, "family": family_name}
    scored: dict[str, list[Track]] = {}
    for role in spec.roles:
        tracks = [t for t in tracks_for(role, family_name) if t.applies(kit)]
        if tracks:
            scored[role] = tracks
    if not scored:
        return Outcome(run.name, run.digest, "skipped", {}, {"skipped": "no track of this tool applies here"}, labels)
    subject = organism.subject()
    if missing := unmet_needs(spec, subject):
        return Outcome(run.name, run.digest, "skipped", {}, {"skipped": "lacks " + ", ".join(missing)}, labels)
    tool = spec.make(seed, **run.overrides)
    findings, referee = organism.findings, Stopwatch()
    busy, before, start = findings.busy_s, subject.forward_passes, time.perf_counter()
    with findings.watch() as used:
        answers: dict[str, Answer] = {}
        for role in scored:
            if role == "detect" and spec.provides and not run.overrides:  # it computes a shared finding: reuse it
                verdict = shared(subject, spec.provides)
                answers[role] = Answer(verdict, verdict.to_json())
            else:
                answers[role] = ASK[role](tool, subject, kit, seed, referee)
    wall = time.perf_counter() - start - (findings.busy_s - busy) - referee.seconds
    passes = subject.forward_passes - before
    record = {key: value for answer in answers.values() for key, value in answer.record.items()}
    cost: dict[str, Any] = {name: {} for name in sorted(used)}  # each finding's whole cost, filled in at the end
    scores: dict[str, dict[str, Any]] = {}
    for role, tracks in scored.items():
        for track in tracks:
            try:
                result = track.score(answers[role], kit, seed)
            except Exception as exc:  # the referee's failure, not the tool's: keep the answer, say so
                return Outcome(run.name, run.digest, "error", {}, record, labels, wall, passes, cost,
                               f"the {track.name} track could not score the answer: {type(exc).__name__}: {exc}")
            if result is not None:
                scores[track.name] = result
    if not scores:
        return Outcome(run.name, run.digest, "skipped", {}, {**record, "skipped": "no track scored its answer here"},
                       labels, wall, passes, cost)
    return Outcome(run.name, run.digest, "done", scores, record, labels, max(wall, 0.0), passes, cost)


def run_organism(family_name: str, folder: Path, runs: Sequence[ToolRun], seed: int, budget: int,
                 settings: Mapping[str, Any]) -> list[Outcome]:
    """Open the organism in ``folder`` and run every tool of ``runs`` on it, one thread (an
    executor job). A tool that raises is reported as an error; the others go on."""
    with fixed_threads():
        organism = family(family_name).open(Path(folder), seed, budget, settings)
        outcomes = []
        labels = {**organism.kit.labels, "family": family_name}
        for run in runs:
            try:
                outcomes.append(ask_and_score(organism, run, seed, family_name))
            except Exception as exc:  # one broken tool must not lose the other tools' cells
                outcomes.append(Outcome(run.name, run.digest, "error", {}, {}, labels,
                                        error=f"{type(exc).__name__}: {exc}"))
        for outcome in outcomes:
            outcome.shared = {name: organism.findings.cost[name].to_json() for name in outcome.shared or {}}
        return outcomes
