"""The referee: one organism, every tool asked for it. The referee opens the organism's kit (the
truth side) and draws the questions only it may choose (``deepaudit.game.roles``); the tools
run in a sealed worker (``deepaudit.game.seal``) that holds the public files alone and answers
in plain data; the referee then scores the answers against the kit. A tool's cost is its own:
wall seconds and examples forwarded while it ran, less the seconds spent computing shared
findings (charged once, to the finding, and listed beside each tool that used it).

``run_organism`` is one executor job: it returns plain data (the cells), and the driver alone
writes the store."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepaudit.game import wire
from deepaudit.game.answer import Answer
from deepaudit.game.roles import ROLES
from deepaudit.game.seal import ask_sealed
from deepaudit.game.tracks.base import Track, tracks_for
from deepaudit.game.worker import answer
from deepaudit.tools.registry import tool_spec
from deepaudit.zoo import Kit, Organism, family
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
    cpu_s: float = 0.0


def scored_roles(run: ToolRun, kit: Kit, family_name: str) -> dict[str, list[Track]]:
    """The tool's roles that some track scores on this organism, with those tracks."""
    scored: dict[str, list[Track]] = {}
    for role in tool_spec(run.name).roles:
        if tracks := [t for t in tracks_for(role, family_name) if t.applies(kit)]:
            scored[role] = tracks
    return scored


def score(run: ToolRun, reply: Mapping[str, Any], scored: Mapping[str, list[Track]], kit: Kit, seed: int,
          labels: dict[str, Any]) -> Outcome:
    """The tracks' scores of a tool's reply (plain data from the worker)."""
    record = dict(reply.get("record") or {})
    wall, passes = float(reply.get("wall_s", 0.0)), int(reply.get("forward_passes", 0))
    cpu = float(reply.get("cpu_s", 0.0))
    cost = dict(reply.get("shared") or {})
    if reply["status"] != "done":
        return Outcome(run.name, run.digest, reply["status"], {}, record, labels, wall, passes, cost, reply.get("error"))
    try:
        answers = {role: Answer(ROLES[role].receive(reply["values"][role], kit, seed), record) for role in scored}
    except Exception as exc:  # the tool's answer is malformed: the tool's failure
        return Outcome(run.name, run.digest, "error", {}, record, labels, wall, passes, cost,
                       f"the answer could not be read: {type(exc).__name__}: {exc}")
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
    return Outcome(run.name, run.digest, "done", scores, record, labels, wall, passes, cost, cpu_s=cpu)


def _referee(organism: Organism, runs: Sequence[ToolRun], seed: int, family_name: str,
             ask: Any) -> list[Outcome]:
    """Plan, question, ask (``ask(asks, questions)`` yields one reply per ask) and score."""
    kit = organism.kit
    labels = {**kit.labels, "family": family_name}
    outcomes: dict[int, Outcome] = {}
    plans: dict[int, dict[str, list[Track]]] = {}
    for i, run in enumerate(runs):
        if scored := scored_roles(run, kit, family_name):
            plans[i] = scored
        else:
            outcomes[i] = Outcome(run.name, run.digest, "skipped", {}, {"skipped": "no track of this tool applies here"},
                                  labels)
    questions: dict[str, Any] = {}
    for role in dict.fromkeys(role for scored in plans.values() for role in scored):
        try:
            questions[role] = ROLES[role].question(kit, seed)
        except Exception as exc:  # the referee's failure: every tool of that role is told so
            for i in [i for i, scored in plans.items() if role in scored]:
                outcomes[i] = Outcome(runs[i].name, runs[i].digest, "error", {}, {}, labels, error=(
                    f"the referee could not prepare the {role} question: {type(exc).__name__}: {exc}"))
                del plans[i]
    asked = sorted(plans)
    replies: Iterable[Mapping[str, Any]] = ask([(runs[i].name, runs[i].overrides, list(plans[i])) for i in asked],
                                               questions)
    for i, reply in zip(asked, replies):
        outcomes[i] = score(runs[i], reply, plans[i], kit, seed, labels)
    return [outcomes[i] for i in range(len(runs))]


def ask_and_score(organism: Organism, run: ToolRun, seed: int, family_name: str) -> Outcome:
    """One tool on an opened organism, in this process: the same questions, answers (crossing
    as plain data) and scores as the game's sealed worker gives, without the seal (tests)."""

    def here(asks: Any, questions: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
        return (wire.roundtrip(reply) for reply in answer(organism, asks, wire.roundtrip(questions), seed))

    return _referee(organism, [run], seed, family_name, here)[0]


def run_organism(family_name: str, folder: Path, runs: Sequence[ToolRun], seed: int, budget: int,
                 settings: Mapping[str, Any]) -> list[Outcome]:
    """Open the kit of the organism in ``folder`` and score every tool of ``runs`` on it, the
    tools running in a sealed worker (an executor job). A tool that fails is reported as an
    error; the others go on."""
    with fixed_threads():
        organism = family(family_name).open(Path(folder), seed, budget, settings)

        def sealed(asks: Any, questions: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
            return ask_sealed(family_name, Path(folder), asks, questions, seed, budget, settings)

        return _referee(organism, runs, seed, family_name, sealed)
