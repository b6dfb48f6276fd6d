"""Run an audit: load the model and the clean data, run the stages cheapest first inside the
time budget, and rewrite the report after every stage. Each finished stage is cached in
``OUT/stages/`` with a fingerprint of the model, the data and the settings, so that an
interrupted audit, run again with the same command, resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from deepaudit.audit import language, vision
from deepaudit.audit.findings import findings, verdict
from deepaudit.audit.inputs import CleanData, load_clean_data, load_prompts
from deepaudit.audit.model import AuditedModel
from deepaudit.audit.reliability import measured_reliability
from deepaudit.audit.report import SCHEMA_VERSION, versions, write_report
from deepaudit.audit.source import load_audited_model
from deepaudit.audit.stages import (
    AuditContext,
    FamilyAudit,
    SkipStage,
    runnable_tools,
    share_finding,
    stage_order,
    stage_plan,
)
from deepaudit.audit.truthcheck import require_zoo_truth
from deepaudit.errors import DeepAuditError

STAGES_DIR = "stages"
FAMILIES: dict[str, FamilyAudit] = {"vision": vision, "lm": language}  # type: ignore[dict-item]


class StageCache:
    """Finished stages as JSON files, valid only for the same fingerprint."""

    def __init__(self, folder: Path, fingerprint: str):
        self.folder, self.fingerprint = folder, fingerprint

    def _path(self, name: str) -> Path:
        return self.folder / f"{name.replace(':', '-')}.json"

    def get(self, name: str) -> dict[str, Any] | None:
        path = self._path(name)
        if not path.is_file():
            return None
        try:
            saved = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None  # a stage file cut short by the interruption: run the stage again
        return saved["record"] if saved.get("fingerprint") == self.fingerprint else None

    def put(self, name: str, record: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self._path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "record": record}))
        tmp.replace(self._path(name))


def _fingerprint(audited: AuditedModel, data: CleanData, seed: int, max_inputs: int) -> str:
    """What a cached stage depends on: the model's source with the digest of every file that
    defines it (weights, card, entry-point code, a Hugging Face folder), its card as loaded, the
    clean data and the settings."""
    h = hashlib.sha256(json.dumps({"source": audited.source, "card": audited.card, "modality": audited.modality,
                                   "data": data.info["source"], "seed": seed, "max_inputs": max_inputs,
                                   "schema": SCHEMA_VERSION}, sort_keys=True, default=str).encode())
    h.update(data.x.numpy().tobytes())
    h.update(json.dumps(data.texts).encode())
    if data.y is not None:
        h.update(data.y.numpy().tobytes())
    return h.hexdigest()


def run_stage(fn: Callable[[AuditContext, float], dict[str, Any]], ctx: AuditContext, allowance: float) -> dict[str, Any]:
    """Run one stage; its failure is recorded, never raised (but an interruption is)."""
    before, start = ctx.meter.forward_passes, time.perf_counter()
    record: dict[str, Any] = {"allowance_s": round(allowance, 3)}
    try:
        record.update(status="done", data=fn(ctx, allowance))
    except SkipStage as exc:
        record.update(status="skipped", message=str(exc))
    except DeepAuditError as exc:
        record.update(status="failed", error=str(exc))
    except Exception as exc:  # a tool or the user's model raised: keep the report, name the error
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    wall = time.perf_counter() - start
    record.update(wall_s=round(wall, 3), forward_passes=ctx.meter.forward_passes - before,
                  over_budget=wall > 1.5 * allowance + 1.0)
    return record


@contextmanager
def _kept_when_interrupted(report: dict[str, Any], out: Path) -> Iterator[None]:
    """Ctrl-C: the report on disk says "interrupted" (not "running"), then the interruption goes on."""
    try:
        yield
    except KeyboardInterrupt:
        report["status"] = "interrupted"
        write_report(report, out)
        raise


def _refresh(report: dict[str, Any]) -> None:
    report["verdict"] = verdict(report["stages"], report.get("reliability", {}), report["model"].get("family", ""))
    family = FAMILIES.get(report["model"].get("family", ""))
    report["findings"] = findings(report["stages"], report.get("reliability", {}), report["verdict"], family)


def run_audit(model: str, data: str, out: Path, budget_s: float | None = None, card: Path | None = None,
              arch: str | None = None, trust_pickle: bool = False, tools: list[str] | None = None,
              max_inputs: int | None = None, seed: int = 0, store: Path | None = None, command: str | None = None,
              on_stage: Callable[[str, dict[str, Any]], None] | None = None, threads: int | None = None,
              tool_params: dict[str, dict[str, Any]] | None = None, trust_remote_code: bool = False,
              base: str | None = None) -> dict[str, Any]:
    """Audit ``model`` with the trusted clean ``data``; write ``report.json`` and
    ``report.html`` into ``out`` after every stage; return the report. ``budget_s`` defaults to
    the model family's (120 s for a classifier, 300 s for a language model); ``base`` is the
    language model ``model`` was fine-tuned from, when the user has it. ``threads`` sets
    PyTorch's CPU threads for the audit (one is fastest for small models on a busy machine);
    ``tool_params`` fixes a tool's parameters (e.g. ``{"neural_cleanse": {"steps": 50}}``)
    instead of sizing them to the time budget; ``trust_remote_code`` lets a Hugging Face model
    run its own code (never the default). Raises DeepAuditError, before anything runs, when
    ``out`` cannot hold the report."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(model, data, Path(out), budget_s, card, arch, trust_pickle, trust_remote_code, tools, max_inputs,
                    seed, store, command, on_stage, tool_params or {}, base)
    finally:
        torch.set_num_threads(before)


def _run(model: str, data: str, out: Path, budget_s: float | None, card: Path | None, arch: str | None,
         trust_pickle: bool, trust_remote_code: bool, tools: list[str] | None, max_inputs: int | None, seed: int,
         store: Path | None, command: str | None, on_stage: Callable[[str, dict[str, Any]], None] | None,
         tool_params: dict[str, dict[str, Any]], base: str | None) -> dict[str, Any]:
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "status": "running", "command": command or f"run_audit({model!r}, {data!r})",
        "versions": versions(), "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "budget_s": budget_s, "seed": seed, "model": {"spec": model}, "data": {"spec": data},
        "stages": {}, "errors": [], "notes": []}
    _refresh(report)
    write_report(report, out)  # an unusable --out is refused here, before anything runs
    with _kept_when_interrupted(report, out):
        try:
            audited = load_audited_model(model, card, arch, trust_pickle, trust_remote_code, base)
            family = FAMILIES[audited.family]
            report["model"]["family"] = audited.family
            report["budget_s"] = budget_s = budget_s or family.DEFAULT_BUDGET_S
            max_inputs = max_inputs or family.DEFAULT_MAX_INPUTS
            if audited.organism_folder is not None:
                require_zoo_truth(audited.organism_folder, audited.family)
            clean = (load_prompts(data, max_inputs, seed) if audited.family == "lm"
                     else load_clean_data(data, audited.card, audited.tokenizer, max_inputs, seed))
            from deepaudit.tools.registry import TOOLS

            unknown = [t for t in tools or [] if t not in TOOLS]
            if unknown:
                raise DeepAuditError(f"unknown tools {unknown}; registered tools: {list(TOOLS)}")
            tools = stage_order(list(tools)) if tools else runnable_tools(audited.family)
        except DeepAuditError as exc:
            report.update(status="failed", errors=[str(exc)])
            _refresh(report)
            write_report(report, out)
            return report
        report["model"].update(source=audited.source, modality=audited.modality,
                               card={k: v for k, v in audited.card.items() if k != "layers"})
        report["data"].update(clean.info)
        report["notes"] = audited.notes + clean.notes
        report["reliability"] = measured_reliability(store, tools, suites=family.RELIABILITY_SUITES)
        ctx = AuditContext(audited, clean, family, seed, tool_params)
        cache = StageCache(out / STAGES_DIR, _fingerprint(audited, clean, seed, max_inputs))
        plan = stage_plan(tools, ctx)
        start = time.monotonic()
        for i, (name, fn, share) in enumerate(plan):
            record = cache.get(name)
            if record is not None:
                record["resumed"] = True
            elif name != "card" and report["stages"]["card"]["status"] != "done":
                record = {"status": "skipped", "message": "the model card and sanity checks did not pass",
                          "wall_s": 0.0, "forward_passes": 0}
            else:
                remaining = max(budget_s - (time.monotonic() - start), 0.0)
                record = run_stage(fn, ctx, remaining * share / max(sum(s for _, _, s in plan[i:]), 1e-9))
                if record["status"] == "done":
                    cache.put(name, record)
            ctx.results[name] = record
            share_finding(ctx, name, record)
            report["stages"][name] = record
            if record["status"] == "failed":
                report["errors"].append(f"{name}: {record['error']}")
            _refresh(report)
            write_report(report, out)
            if on_stage:
                on_stage(name, record)
    report["status"] = "complete" if report["stages"]["card"]["status"] == "done" else "failed"
    if audited.organism_folder is not None and report["status"] == "complete":
        from deepaudit.audit.truthcheck import check_against_truth

        report["truth_check"] = check_against_truth(audited.organism_folder, report, audited.family)
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_report(report, out)
    return report
