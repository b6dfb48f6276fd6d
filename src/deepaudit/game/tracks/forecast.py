"""forecast: will test accuracy jump (grokking), and when? At every recorded step of a training
run a forecaster sees the monitor's online measures up to that step (never a test measure or a
post-hoc one) and gives P(jump); its alarm is the first step with P(jump) >= 0.5. Per run that
generalises: the lead of its alarm over a watcher of the test loss (who raises the alarm once the
test loss has halved from its peak so far), in steps (positive: earlier), and the error of the
predicted jump step; per run that never generalises: whether it raised a false alarm. The jump
is the step from which test accuracy stays at 95% or more (from the run's sealed record)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deepaudit.game.answer import Answer
from deepaudit.game.tracks.base import Cell, Column, Track, mean_of, register_track
from deepaudit.metrics import Metric, mean_with_ci
from deepaudit.zoo import Kit


@register_track
class ForecastTrack(Track):
    name = "forecast"
    order = 40
    roles = ("forecast",)
    kit_needs = ("jump_step", "baseline_alarm")
    table = "training runs"
    columns = (Column("lead (steps)", "lead_steps", ci=True), Column("alarmed", "alarmed"),
               Column("jump error (steps)", "jump_error_steps"), Column("false alarms", "false_alarm"))

    def score(self, answer: Answer, kit: Kit, seed: int) -> dict[str, Any] | None:
        k: Any = kit
        alarm, predicted = answer.value["alarm_step"], answer.value["predicted_jump"]
        jump, watcher = k.jump_step(), k.baseline_alarm()
        out: dict[str, Any] = {"alarm_step": alarm, "predicted_jump": predicted, "jump_step": jump,
                               "baseline_alarm": watcher, "generalises": jump is not None}
        if jump is None:
            out["false_alarm"] = alarm is not None
        else:
            out["lead_steps"] = (watcher - alarm) if alarm is not None and watcher is not None else None
            out["jump_error_steps"] = abs(predicted - jump) if predicted is not None else None
        return out

    def aggregate(self, cells: Sequence[Cell], seed: int) -> dict[str, Metric]:
        """Mean lead over the generalising runs that raised an alarm (a run with no alarm is a miss,
        not a lead of zero: ``alarmed`` is their share), false alarms over the runs that never
        generalise."""
        generalising = [c["scores"] for c in cells if c["scores"]["generalises"]]
        out = {"lead_steps": mean_of(cells, "lead_steps", seed),
               "jump_error_steps": mean_of(cells, "jump_error_steps", seed),
               "alarmed": mean_with_ci([float(s["alarm_step"] is not None) for s in generalising], seed),
               "false_alarm": mean_of(cells, "false_alarm", seed)}
        return {k: v for k, v in out.items() if v}
