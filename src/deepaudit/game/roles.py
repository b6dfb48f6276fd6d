"""How the referee asks a tool for the answer of one of its roles (``deepaudit.tools.base``), on
one organism. A role's answer is computed once and scored by every track of that role (a
Verdict feeds detect, target and trigger). Some roles take inputs only the referee may choose
(the inputs to score, the statements to probe, the facts to edit); the kit hands those over
without their labels. Seconds the referee spends scoring inside a role (an edited model checked
before the next edit) run on the ``referee`` stopwatch and are not charged to the tool."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from deepaudit.game.answer import Answer, Stopwatch
from deepaudit.game.tracks.inputs import flagged
from deepaudit.game.tracks.latent import probe_layers
from deepaudit.internals.ablation import Unit
from deepaudit.tools.base import Forecast, Verdict
from deepaudit.zoo import Kit

TOP_UNITS = 32  # how much of a localizer's ranking the store keeps
ALARM_P = 0.5  # a forecaster raises its alarm at the first step with P(jump) >= ALARM_P


Ask = Callable[[Any, Any, Kit, int, Stopwatch], Answer]


def detect(tool: Any, subject: Any, kit: Kit, seed: int, referee: Stopwatch) -> Answer:
    verdict: Verdict = tool.audit(subject)
    return Answer(verdict, verdict.to_json())


def features(tool: Any, subject: Any, kit: Kit, seed: int, referee: Stopwatch) -> Answer:
    values = np.asarray(tool.features(subject), dtype=float).round(6).tolist()
    return Answer(values, {"features": values})


def inputs(tool: Any, subject: Any, kit: Kit, seed: int, referee: Stopwatch) -> Answer:
    """Fitted on the subject's trusted data, the tool scores the referee's mix of clean and
    flagged inputs (the kit keeps which are which)."""
    batch, _ = flagged(kit, seed)
    scores = np.asarray(tool.fit(subject).score(batch), dtype=float)
    if scores.shape != (len(batch),) or not np.isfinite(scores).all():
        raise ValueError(f"an input detector must return one finite score per input; got shape {scores.shape}")
    return Answer(scores, {})


def remove(tool: Any, subject: Any, kit: Kit, seed: int, referee: Stopwatch) -> Answer:
    edited = tool.remove(subject)
    return Answer(edited, {"evidence": getattr(tool, "evidence", {})})


def localize(tool: Any, subject: Any, kit: Kit, seed: int, referee: Stopwatch) -> Answer:
    units: list[Unit] = tool.localize(subject)
    return Answer(units, {"units": [[str(layer), int(index)] for layer, index in units[:TOP_UNITS]]})


def probe(tool: Any, subject: Any, kit: Kit, seed: int, referee: Stopwatch) -> Answer:
    """The latent-knowledge procedure: the probe fitted at every layer on the subject's trusted
    prompts, its layer chosen on those alone, scored on the kit's held-out statements."""
    result = probe_layers(tool, subject, kit, seed)
    return Answer(result, {"layers": {rule: r["layer"] for rule, r in result["rules"].items()}})


def edit(tool: Any, subject: Any, kit: Kit, seed: int, referee: Stopwatch) -> Answer:
    """Each of the kit's fact edits, one at a time on the unedited model; each edited copy is
    scored (on the referee's stopwatch) and dropped before the next."""
    rows = []
    for request in kit.requests:  # type: ignore[attr-defined]
        start = time.perf_counter()
        edited = tool.edit(subject.lm, request)
        wall = time.perf_counter() - start
        with referee.running():
            scores = kit.score_edit(edited, request)  # type: ignore[attr-defined]
        del edited
        rows.append({"fact": request.fact_id, "target_new": request.target_new, "wall_s": wall, **scores})
    return Answer(rows, {"edits": len(rows)})


def forecast(tool: Any, subject: Any, kit: Kit, seed: int, referee: Stopwatch) -> Answer:
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
    return Answer(answer, answer)


def reverse(tool: Any, subject: Any, kit: Kit, seed: int, referee: Stopwatch) -> Answer:
    program = tool.reverse(subject.model, subject.card)
    return Answer(program, program.to_json())


ASK: dict[str, Ask] = {"detect": detect, "features": features, "inputs": inputs, "remove": remove,
                       "localize": localize, "probe": probe, "edit": edit, "forecast": forecast,
                       "reverse": reverse}
