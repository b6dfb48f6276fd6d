"""How the referee asks a tool for the answer of one of its roles (``deepaudit.tools.base``), on
one organism, across the seal between the referee and the tools' worker. A role has up to three
steps:

- ``question`` (referee): the inputs only the referee may choose, drawn from the kit without
  their labels (the inputs to score, the statements to probe, the facts to edit, the inputs of a
  program to run);
- ``ask`` (worker): the tool's answer as plain data (numbers, strings, arrays, tensors, a
  model's changed tensors) and the record the store keeps;
- ``receive`` (referee): what the tracks read, rebuilt from that data (a Verdict, an edited
  model made from the referee's own copy, the probe's AUROCs against the held-out truth).

A role's answer is computed once and scored by every track of that role (a Verdict feeds
detect, target and trigger)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from deepaudit.game import wire
from deepaudit.game.answer import Answer
from deepaudit.game.tracks.inputs import flagged
from deepaudit.game.tracks.latent import probe_question, probe_result, probe_scores
from deepaudit.lm.facts import EditRequest
from deepaudit.tools.base import Forecast, Verdict
from deepaudit.zoo import Kit

TOP_UNITS = 32  # how much of a localizer's ranking the store keeps
ALARM_P = 0.5  # a forecaster raises its alarm at the first step with P(jump) >= ALARM_P

Reply = tuple[Any, dict[str, Any]]  # the answer as plain data, and the record the store keeps


def _no_question(kit: Kit, seed: int) -> None:
    return None


def _as_is(value: Any, kit: Kit, seed: int) -> Any:
    return value


@dataclass(frozen=True)
class Role:
    """The three steps of asking one role (module docstring)."""

    ask: Callable[[Any, Any, Any, int], Reply]
    question: Callable[[Kit, int], Any] = _no_question
    receive: Callable[[Any, Kit, int], Any] = _as_is


def _detect(tool: Any, subject: Any, question: None, seed: int) -> Reply:
    verdict: Verdict = tool.audit(subject)
    return verdict.to_json(), verdict.to_json()


def _features(tool: Any, subject: Any, question: None, seed: int) -> Reply:
    values = np.asarray(tool.features(subject), dtype=float).round(6).tolist()
    return values, {"features": values}


def _inputs(tool: Any, subject: Any, batch: Any, seed: int) -> Reply:
    """Fitted on the subject's trusted data, the tool scores the referee's mix of clean and
    flagged inputs (the kit keeps which are which)."""
    scores = np.asarray(tool.fit(subject).score(batch), dtype=float)
    if scores.shape != (len(batch),) or not np.isfinite(scores).all():
        raise ValueError(f"an input detector must return one finite score per input; got shape {scores.shape}")
    return scores, {}


def _scores(value: Any, kit: Kit, seed: int) -> np.ndarray:
    _, is_flagged = flagged(kit, seed)
    scores = np.asarray(value, dtype=float)
    if scores.shape != is_flagged.shape or not np.isfinite(scores).all():
        raise ValueError(f"expected {len(is_flagged)} finite scores, got shape {scores.shape}")
    return scores


def _original(subject: Any) -> Any:
    return subject.lm if subject.family == "lm" else subject.model


def _remove(tool: Any, subject: Any, question: None, seed: int) -> Reply:
    edited = tool.remove(subject)
    return wire.model_change(_original(subject), edited), {"evidence": getattr(tool, "evidence", {})}


def _removed(change: Any, kit: Kit, seed: int) -> Any:
    return wire.rebuild(kit.original, change)  # type: ignore[attr-defined]


def _localize(tool: Any, subject: Any, question: None, seed: int) -> Reply:
    units = [[str(layer), int(index)] for layer, index in tool.localize(subject)]
    return units, {"units": units[:TOP_UNITS]}


def _units(value: Any, kit: Kit, seed: int) -> list[tuple[str, int]]:
    return [(str(layer), int(index)) for layer, index in value]


def _probe(tool: Any, subject: Any, question: Any, seed: int) -> Reply:
    """The latent-knowledge procedure: the probe fitted at every layer on the subject's trusted
    prompts, its layer chosen on those alone, its scores on the kit's held-out statements."""
    scores = probe_scores(tool, subject, question, seed)
    return scores, {"layers": dict(scores["rules"])}


def _edit_requests(kit: Kit, seed: int) -> list[dict[str, Any]]:
    return [asdict(request) for request in kit.requests]  # type: ignore[attr-defined]


def _edit(tool: Any, subject: Any, requests: list[dict[str, Any]], seed: int) -> Reply:
    """Each of the kit's fact edits, one at a time on the unedited model; each edit's changed
    tensors go back to the referee, which scores them on its own copy."""
    rows = []
    for fields in requests:
        request = EditRequest(**{**fields, "paraphrases": tuple(fields.get("paraphrases") or ())})
        start = time.perf_counter()
        edited = tool.edit(subject.lm, request)
        wall = time.perf_counter() - start
        rows.append({"change": wire.model_change(subject.lm, edited), "wall_s": wall})
        del edited
    return rows, {"edits": len(rows)}


def _edits(rows: Any, kit: Kit, seed: int) -> list[dict[str, Any]]:
    requests = kit.requests  # type: ignore[attr-defined]
    if len(rows) != len(requests):
        raise ValueError(f"expected {len(requests)} edits, got {len(rows)}")
    scored = []
    for request, row in zip(requests, rows):
        edited = wire.rebuild(kit.original, row["change"])  # type: ignore[attr-defined]
        scores = kit.score_edit(edited, request)  # type: ignore[attr-defined]
        del edited
        scored.append({"fact": request.fact_id, "target_new": request.target_new, "wall_s": float(row["wall_s"]),
                       **scores})
    return scored


def _forecast(tool: Any, subject: Any, question: None, seed: int) -> Reply:
    """The forecaster reads the run's public measures up to each recorded step in turn; its
    alarm is the first step with P(jump) >= 0.5, with the jump step it predicts then."""
    series = subject.series
    alarm, predicted = None, None
    for t in sorted({int(step) for steps, _ in series.values() for step in steps}):
        visible = {name: (steps[steps <= t], values[steps <= t]) for name, (steps, values) in series.items()}
        result: Forecast = tool.forecast(visible)
        if result.p_jump >= ALARM_P:
            alarm, predicted = int(t), result.jump_step
            break
    answer = {"alarm_step": alarm, "predicted_jump": predicted}
    return answer, answer


def _program_inputs(kit: Kit, seed: int) -> np.ndarray:
    return kit.all_inputs()[0]  # type: ignore[attr-defined]


def _reverse(tool: Any, subject: Any, pairs: np.ndarray, seed: int) -> Reply:
    """The recovered program, run on the referee's inputs (its outputs are scored, not its code)."""
    program = tool.reverse(subject.model, subject.card)
    outputs = np.asarray(program(pairs[:, 0], pairs[:, 1]))
    return {"outputs": outputs, "frequencies": [int(f) for f in program.frequencies]}, program.to_json()


def _program_outputs(value: Any, kit: Kit, seed: int) -> dict[str, Any]:
    outputs, expected = np.asarray(value["outputs"]), len(_program_inputs(kit, seed))
    if outputs.shape != (expected,):
        raise ValueError(f"the program gave outputs of shape {outputs.shape} for {expected} inputs")
    return {"outputs": outputs, "frequencies": [int(f) for f in value["frequencies"]]}


ROLES: dict[str, Role] = {
    "detect": Role(_detect, receive=lambda value, kit, seed: Verdict.from_json(value)),
    "features": Role(_features),
    "inputs": Role(_inputs, question=lambda kit, seed: flagged(kit, seed)[0], receive=_scores),
    "remove": Role(_remove, receive=_removed),
    "localize": Role(_localize, receive=_units),
    "probe": Role(_probe, question=lambda kit, seed: probe_question(kit), receive=probe_result),
    "edit": Role(_edit, question=_edit_requests, receive=_edits),
    "forecast": Role(_forecast),
    "reverse": Role(_reverse, question=_program_inputs, receive=_program_outputs),
}


def ask_here(role: str, tool: Any, subject: Any, kit: Kit, seed: int) -> Answer:
    """One role asked in this process, through the same steps and the same plain-data crossing
    as across the seal (for tests and notebooks; the game asks in its worker)."""
    steps = ROLES[role]
    value, record = steps.ask(tool, subject, wire.roundtrip(steps.question(kit, seed)), seed)
    return Answer(steps.receive(wire.roundtrip(value), kit, seed), record)
