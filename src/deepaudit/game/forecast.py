"""The forecast track: at every recorded step t of a training run, a forecaster sees the
monitor's online measures up to t (no test measure, no post-hoc measure) and says whether
test accuracy will jump. Its alarm is the first t at which P(jump) >= 0.5.

Scores, per run that generalises: the lead time of the alarm over a watcher of the test loss
(who raises the alarm once the test loss has halved from its peak so far), in steps (positive:
earlier) and the error of the predicted jump step; per run that never generalises: whether
the forecaster raised a false alarm. The jump is the step from which test accuracy stays at
95% or more (from the run's record; the forecaster never sees it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.game.store import CellKey, Store
from deepaudit.monitor import MonitorStore
from deepaudit.tools.grok_forecast import FORECASTERS, Forecaster, Series
from deepaudit.zoo import read_truth

HIDDEN = ("test_", "posthoc/")  # what a forecaster may not see: test data, the final model
ALARM_P = 0.5
GROKKED_ACC = 0.95


def visible(series: Series, until: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The measures a forecaster may see, up to and including step ``until``."""
    out = {}
    for name, (steps, values) in series.items():
        if not name.startswith(HIDDEN):
            keep = steps <= until
            out[name] = (steps[keep], values[keep])
    return out


def jump_step(series: Series) -> int | None:
    """First step from which test accuracy stays at 95% or more (None: it never does)."""
    steps, acc = series["test_acc"]
    above = acc >= GROKKED_ACC
    if not above[-1]:
        return None
    below = np.flatnonzero(~above)
    return int(steps[below[-1] + 1]) if len(below) else int(steps[0])


def baseline_alarm(series: Series) -> int | None:
    """The baseline: the first step at which the test loss is below half its peak so far."""
    steps, loss = series["test_loss"]
    hits = np.flatnonzero(loss < 0.5 * np.maximum.accumulate(loss))
    return int(steps[hits[0]]) if len(hits) else None


def score_run(forecaster: Forecaster, series: Series) -> dict[str, Any]:
    """Run ``forecaster`` at every recorded step of one run and score its first alarm."""
    steps = series["train_acc"][0]
    alarm, predicted = None, None
    for t in steps:
        forecast = forecaster.forecast(visible(series, int(t)))
        if forecast.p_jump >= ALARM_P:
            alarm, predicted = int(t), forecast.jump_step
            break
    jump, baseline = jump_step(series), baseline_alarm(series)
    out: dict[str, Any] = {"alarm_step": alarm, "predicted_jump": predicted, "jump_step": jump,
                           "baseline_alarm": baseline, "generalises": jump is not None}
    if jump is None:
        out["false_alarm"] = alarm is not None
    else:
        out["lead_steps"] = (baseline - alarm) if alarm is not None and baseline is not None else None
        out["jump_error_steps"] = abs(predicted - jump) if predicted is not None else None
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean lead over the generalising runs that raised an alarm (``alarmed`` of them; a run with
    no alarm is a miss, not a lead of zero), and false alarms over the runs that never generalise."""
    leads = [r["lead_steps"] for r in rows if r["generalises"] and r["lead_steps"] is not None]
    never = [r for r in rows if not r["generalises"]]
    return {"runs": len(rows), "generalising": sum(r["generalises"] for r in rows),
            "alarmed": len(leads), "mean_lead_steps": float(np.mean(leads)) if leads else None,
            "false_alarms": sum(r["false_alarm"] for r in never), "never_generalising": len(never)}


def run_forecast(zoo: Path, organisms: list[str], store: Path, suite: str, seed: int = 0,
                 forecasters: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Score each forecaster on the monitor runs of the organisms; record every cell."""
    names = forecasters or sorted(FORECASTERS)
    unknown = sorted(set(names) - set(FORECASTERS))
    if unknown:
        raise ValueError(f"unknown forecasters {unknown}; available: {sorted(FORECASTERS)}")
    monitor, db = MonitorStore(store), Store(store)
    out: dict[str, dict[str, Any]] = {}
    try:
        runs = {oid: read_truth(Path(zoo) / oid) for oid in organisms}
        series = {oid: monitor.series(truth["monitor_run"]) for oid, truth in runs.items()}
        for name in names:
            forecaster, rows = FORECASTERS[name](seed=seed), []
            for oid, truth in runs.items():
                start = time.perf_counter()
                row = {**score_run(forecaster, series[oid]), "role": truth["role"]}
                db.put(CellKey(suite, seed, oid, name, 0), "done", answer={"alarm_step": row["alarm_step"],
                       "predicted_jump": row["predicted_jump"]}, scores=row, wall_s=time.perf_counter() - start,
                       forward_passes=0)
                rows.append({"organism_id": oid, **row})
            out[name] = {"runs": rows, "summary": summarise(rows)}
    finally:
        monitor.close()
        db.close()
    return out
