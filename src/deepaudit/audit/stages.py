"""The audit's stages, cheapest first: the model card and sanity checks, black-box probes,
then every auditing tool of the registry whose family is the model's, through its protocol
(model-level ``audit``, input-level ``fit``/``score``, ``localize``). Each stage takes the
context and a time allowance, sizes its work to fit (from the seconds per example measured in
the card stage), and returns plain JSON-ready numbers: the report and its plots are views of them.

What differs between organism families (a classifier, a causal language model) lives in one
module per family (``audit/vision.py``, ``audit/language.py``) with the functions of
``FamilyAudit``: its card and black-box stages, the subject its tools are handed, and what the
audit measures around a tool's answer. This module runs any of them the same way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from deepaudit.audit.inputs import CleanData
from deepaudit.audit.model import AuditedModel
from deepaudit.errors import DeepAuditError
from deepaudit.subject import CostMeter
from deepaudit.tools.base import Verdict
from deepaudit.tools.registry import ToolSpec, provider, tool_spec, tool_specs
from deepaudit.tools.sizing import Allowance, TooLittleTime

AUDIT_ROLES = ("detect", "inputs", "localize")  # removers edit the model; skylines need labelled organisms

Stage = Callable[["AuditContext", float], dict[str, Any]]


class ModelBehaviourError(DeepAuditError):
    """The model under audit raised, or produced NaN or malformed outputs, on the clean data."""


class SkipStage(Exception):
    """A stage that cannot run (not applicable, or over the time budget), with the reason."""


class FamilyAudit(Protocol):
    """What an organism family's audit module provides (``audit/vision.py``, ``audit/language.py``):
    its default time budget and trusted inputs, the game suites its tools' reliability is read
    from, its stages and hooks, and its findings."""

    DEFAULT_BUDGET_S: float
    DEFAULT_MAX_INPUTS: int
    RELIABILITY_SUITES: tuple[str, ...]

    def card_stage(self, ctx: AuditContext, allowance: float) -> dict[str, Any]: ...

    def blackbox_stage(self, ctx: AuditContext, allowance: float) -> dict[str, Any]: ...

    def subject(self, ctx: AuditContext) -> Any: ...

    def not_applicable(self, spec: ToolSpec, ctx: AuditContext) -> str | None: ...

    def allowance(self, ctx: AuditContext, seconds: float) -> Allowance: ...

    def detected(self, ctx: AuditContext, verdict: Verdict) -> dict[str, Any]: ...

    def input_scores(self, ctx: AuditContext, tool: Any) -> dict[str, Any]: ...

    def localized(self, ctx: AuditContext, units: list[tuple[str, int]]) -> dict[str, Any]: ...

    def findings(self, stages: dict[str, Any], reliability: dict[str, Any]) -> list[dict[str, Any]]: ...


@dataclass
class AuditContext:
    """What the stages share: the model, the clean data, the family's audit, results of
    finished stages."""

    audited: AuditedModel
    data: CleanData
    family: FamilyAudit
    seed: int = 0
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    _subject: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.meter = CostMeter(self.audited.model)

    @property
    def card(self) -> dict[str, Any]:
        return self.results["card"]["data"]["card"]

    @property
    def seconds_per_example(self) -> float:
        return self.results["card"]["data"]["seconds_per_example"]

    @property
    def subject(self) -> Any:
        """The subject the tools are handed (the family's), made once."""
        if self._subject is None:
            self._subject = self.family.subject(self)
        return self._subject


def not_run(spec: ToolSpec, ctx: AuditContext) -> str | None:
    """Why the audit does not run a registered tool on this model (None: it does)."""
    if spec.kind != "tool":
        return f"not run: a {spec.kind}" + (" (it needs labelled organisms)" if spec.kind == "skyline" else "")
    if not set(spec.roles) & set(AUDIT_ROLES):
        return f"not an auditor (roles {list(spec.roles)}): the audit runs {', '.join(AUDIT_ROLES)} tools"
    if ctx.audited.family not in spec.families:
        return f"a tool of the {'/'.join(spec.families)} family; this is a {ctx.audited.family} model"
    return ctx.family.not_applicable(spec, ctx)


def tool_params(name: str, ctx: AuditContext, allowance: float) -> dict[str, Any]:
    """Size a tool's work to its allowance with its registered sizing (unless the caller fixed
    its parameters); raise SkipStage when even the least does not fit."""
    spec = tool_spec(name)
    reason = not_run(spec, ctx)
    if reason:
        raise SkipStage(reason)
    if "trigger" in spec.needs and "trigger" not in ctx.subject.findings.values:
        finder = provider("trigger", ctx.audited.family).name
        raise SkipStage(f"needs the recovered trigger, and no trigger was recovered ({finder} did not run)")
    if name in ctx.params:
        return dict(ctx.params[name])
    if spec.sizing is None:
        return {}
    try:
        return spec.sizing(ctx.family.allowance(ctx, allowance))
    except TooLittleTime as exc:
        raise SkipStage(str(exc)) from exc


def tool_stage(name: str) -> Stage:
    def run(ctx: AuditContext, allowance: float) -> dict[str, Any]:
        params = tool_params(name, ctx, allowance)
        spec = tool_spec(name)
        tool = spec.make(ctx.seed, **params)
        subject = ctx.subject
        out: dict[str, Any] = {"params": params, "roles": list(spec.roles)}
        if "detect" in spec.roles:
            verdict = tool.audit(subject)
            out.update(p_planted=verdict.p_planted, target=verdict.target, evidence=verdict.evidence)
            if verdict.trigger is not None:
                out["trigger"] = verdict.trigger.to_json()
                out.update(ctx.family.detected(ctx, verdict))
        if "inputs" in spec.roles:
            out["inputs"] = ctx.family.input_scores(ctx, tool)
        if "localize" in spec.roles:
            out["localize"] = ctx.family.localized(ctx, tool.localize(subject))
        return out
    return run


def share_finding(ctx: AuditContext, stage: str, record: dict[str, Any]) -> None:
    """A finished stage of a tool that provides a shared finding (the recovered trigger) hands
    its answer to the tools after it, computed once, also when resumed."""
    if not stage.startswith("tool:") or record["status"] != "done":
        return
    spec = tool_spec(stage.split(":", 1)[1])
    if spec.provides is not None and record["data"].get("p_planted") is not None:
        ctx.subject.findings.put(spec.provides, Verdict.from_json(record["data"]))


def stage_plan(tools: list[str], ctx: AuditContext) -> list[tuple[str, Stage, float]]:
    """(name, function, share of the time budget), in the order they run; a tool that cannot
    apply to this model gets no share (it is recorded as skipped, with the reason)."""
    plan: list[tuple[str, Stage, float]] = [("card", ctx.family.card_stage, 0.05),
                                            ("blackbox", ctx.family.blackbox_stage, 0.15)]
    for name in tools:
        spec = tool_spec(name)
        plan.append((f"tool:{name}", tool_stage(name), 0.0 if not_run(spec, ctx) else spec.audit_share))
    return plan


def stage_order(names: list[str]) -> list[str]:
    """Tools in the order the audit runs them: those that provide a shared finding first, those
    that need one last, the others in the order given."""
    specs = [tool_spec(name) for name in dict.fromkeys(names)]
    return [s.name for s in sorted(specs, key=lambda s: (s.provides is None, "trigger" in s.needs))]


def runnable_tools(family: str = "vision") -> list[str]:
    """The registry's tools an audit of a ``family`` model runs: its auditors (detect, inputs,
    localize) of kind tool with a share of the audit's budget, the larger shares first (those
    that may not apply to this very model are skipped later, with the reason). A tool registered
    with no share is scored by the game but not run by the audit."""
    specs = [s for s in tool_specs(family=family)
             if s.kind == "tool" and set(s.roles) & set(AUDIT_ROLES) and s.audit_share > 0]
    return stage_order([s.name for s in sorted(specs, key=lambda s: (-s.audit_share, s.name))])
