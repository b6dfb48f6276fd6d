"""The audit's stages, cheapest first: the model card and sanity checks, black-box probes,
then every auditing tool of the registry through its protocol (model-level ``audit`` and/or
input-level ``fit``/``score``). Each stage takes the context and a time allowance, sizes its
work to fit (from the seconds per example measured in the card stage), and returns plain
JSON-ready numbers: the report and its plots are views of them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from deepaudit.audit.inputs import CleanData
from deepaudit.audit.model import AuditedModel
from deepaudit.audit.source import complete_card
from deepaudit.errors import DataError, DeepAuditError
from deepaudit.internals import intervene
from deepaudit.internals.ablation import Unit, zero_units
from deepaudit.subject import CostMeter, Subject
from deepaudit.tools.base import Verdict, anomaly_index
from deepaudit.tools.mahalanobis import candidate_triggers
from deepaudit.tools.registry import ToolSpec, provider, tool_spec, tool_specs
from deepaudit.tools.sizing import Allowance, TooLittleTime
from deepaudit.triggers import Trigger

STATS_INPUTS = 256
NOISE_LEVELS = (0.05, 0.1, 0.2)
AUDIT_ROLES = ("detect", "inputs", "localize")  # removers edit the model; skylines need labelled organisms
LOCALIZE_TOP_K = 5


class ModelBehaviourError(DeepAuditError):
    """The model under audit raised, or produced NaN or malformed outputs, on the clean data."""


class SkipStage(Exception):
    """A stage that cannot run (not applicable, or over the time budget), with the reason."""


@dataclass
class AuditContext:
    """What the stages share: the model, the clean data, results of finished stages."""

    audited: AuditedModel
    data: CleanData
    seed: int = 0
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    _subject: Subject | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.meter = CostMeter(self.audited.model)

    @property
    def card(self) -> dict[str, Any]:
        return self.results["card"]["data"]["card"]

    @property
    def seconds_per_example(self) -> float:
        return self.results["card"]["data"]["seconds_per_example"]

    @property
    def subject(self) -> Subject:
        """The Subject the tools are handed: the model, its card, the clean data; labels are the
        user's, or the model's own predictions when none were given."""
        if self._subject is None:
            y = self.data.y if self.data.y is not None else predict(self.audited.model, self.data.x).argmax(1)
            self._subject = Subject(self.audited.model, self.card, self.data.x, y)
        return self._subject


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def _forward_checked(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    try:
        out = predict(model, x)
    except Exception as exc:  # the user's model may raise anything; name it and keep the report
        raise ModelBehaviourError(f"the model raised {type(exc).__name__} on a batch of shape "
                                  f"{tuple(x.shape)}: {exc}") from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelBehaviourError(f"the model returned {shape}; the audit needs logits of shape (batch, classes)")
    return out


# -- stage 1: model card and sanity checks ----------------------------------------------
def card_stage(ctx: AuditContext, allowance: float) -> dict[str, Any]:
    model, x, y = ctx.audited.model, ctx.data.x, ctx.data.y
    expected = ctx.audited.card.get("input_shape")
    if expected is not None and list(x.shape[1:]) != list(expected):
        raise DataError(f"clean data has shape {tuple(x.shape[1:])} per input, but the model expects {tuple(expected)}")
    _forward_checked(model, x[:8])  # a first call warms up (lazy initialisation) and fails fast
    start = time.perf_counter()
    logits = _forward_checked(model, x)
    seconds_per_example = (time.perf_counter() - start) / len(x)
    card = complete_card(ctx.audited, x, logits)
    if logits.shape[1] != card["num_classes"]:
        raise ModelBehaviourError(f"the model outputs {logits.shape[1]} logits, its card says {card['num_classes']} classes")
    layers = _layer_stats(model, x[:STATS_INPUTS])
    bad = [s["layer"] for s in layers if not s["finite"]]
    if bad or not torch.isfinite(logits).all():
        where = f"first at layer {bad[0]!r}" if bad else "in the logits"
        raise ModelBehaviourError(f"NaN or infinite activations on the clean data ({where}); "
                                  "the model's weights or the data's scale are broken")
    preds = logits.argmax(1)
    k = card["num_classes"]
    out: dict[str, Any] = {
        "card": card, "seconds_per_example": seconds_per_example,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "layers": layers, "prediction_histogram": torch.bincount(preds, minlength=k).tolist(),
    }
    if y is not None:
        if int(y.min()) < 0 or int(y.max()) >= k:
            raise DataError(f"labels range over [{int(y.min())}, {int(y.max())}] but the model has {k} outputs: "
                            "the labels do not match the model's classes")
        correct = (preds == y).float()
        out["accuracy"] = float(correct.mean())
        out["per_class_accuracy"] = [float(correct[y == c].mean()) if (y == c).any() else None for c in range(k)]
    return out


def _layer_stats(model: nn.Module, x: torch.Tensor) -> list[dict[str, Any]]:
    """Per leaf layer with a tensor output: its parameters, and the mean, sd and share of
    zeros of its activations. Hooks keep these numbers only, not the activations."""
    modules = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    seen: dict[str, list[torch.Tensor]] = {}

    def hook(name: str):
        def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                seen.setdefault(name, []).append(output.detach().double().flatten())
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in modules]
    try:
        predict(model, x)
    finally:
        for handle in handles:
            handle.remove()
    stats = []
    for name, module in modules:
        if name not in seen:
            continue
        a = torch.cat(seen[name])
        finite = bool(torch.isfinite(a).all())
        stats.append({"layer": name, "type": type(module).__name__, "finite": finite,
                      "parameters": int(sum(p.numel() for p in module.parameters(recurse=False))),
                      "mean": float(a.mean()) if finite else None, "std": float(a.std()) if finite and len(a) > 1 else None,
                      "zero_share": float((a == 0).double().mean())})
    return stats


# -- stage 2: black-box probes --------------------------------------------------------
def _perturb(ctx: AuditContext, x: torch.Tensor, level: float, gen: torch.Generator) -> torch.Tensor:
    if ctx.audited.modality == "tokens":
        swap = torch.rand(x.shape, generator=gen) < level
        random_ids = torch.randint(_vocab(ctx), x.shape, generator=gen)
        return torch.where(swap & (x != ctx.audited.model.pad_id), random_ids, x)
    lo, hi = ctx.card["value_range"]
    return (x + level * (hi - lo) * torch.randn(x.shape, generator=gen)).clamp(lo, hi)


def _vocab(ctx: AuditContext) -> int:
    return len(ctx.audited.tokenizer) if ctx.audited.tokenizer is not None else int(ctx.data.x.max()) + 1


def _candidates(ctx: AuditContext, count: int, rng: np.random.Generator) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """Trigger guesses: random patches and blends (continuous inputs), or a random token
    appended at the end (token inputs)."""
    if ctx.audited.modality == "tokens":
        tokens = rng.integers(0, _vocab(ctx), count)
        def appended(token: int) -> Callable[[torch.Tensor], torch.Tensor]:
            return lambda x: torch.cat([x[:, 1:], torch.full((len(x), 1), token)], 1)

        return [appended(int(t)) for t in tokens]
    triggers = candidate_triggers(tuple(ctx.card["input_shape"]), tuple(ctx.card["value_range"]), count, rng)
    return [t.apply for t in triggers]


def blackbox_stage(ctx: AuditContext, allowance: float) -> dict[str, Any]:
    x = ctx.data.x
    per_pass = max(len(x) * ctx.seconds_per_example, 1e-6)
    count = int(min(64, (allowance - len(NOISE_LEVELS) * per_pass) / per_pass))
    if count < 8:
        raise SkipStage(f"needs about {(8 + len(NOISE_LEVELS)) * per_pass:.1f} s; {allowance:.1f} s left")
    gen, rng = torch.Generator().manual_seed(ctx.seed), np.random.default_rng(ctx.seed)
    model = ctx.audited.model
    clean = predict(model, x).argmax(1)
    k = ctx.card["num_classes"]
    noise = [{"level": lv, "flip_rate": float((predict(model, _perturb(ctx, x, lv, gen)).argmax(1) != clean)
                                             .float().mean())} for lv in NOISE_LEVELS]
    pulls, classes = [], []
    clean_hist = torch.bincount(clean, minlength=k).double() + 1
    shifts = []
    for apply in _candidates(ctx, count, rng):
        pred = predict(model, apply(x)).argmax(1)
        hist = torch.bincount(pred, minlength=k).double() + 1
        p, q = hist / hist.sum(), clean_hist / clean_hist.sum()
        shifts.append(float((p * (p / q).log()).sum()))
        moved = pred[pred != clean]
        dominant = int(torch.bincount(moved, minlength=k).argmax()) if len(moved) else int(clean[0])
        eligible = clean != dominant
        pulls.append(float((pred[eligible] == dominant).float().mean()) if eligible.any() else 0.0)
        classes.append(dominant)
    pulls_a = np.array(pulls)
    top = int(pulls_a.argmax())
    out: dict[str, Any] = {"noise": noise, "candidates": count, "pulls": [round(v, 4) for v in pulls],
           "pull_classes": classes, "kl_shift": [round(v, 4) for v in shifts],
           "pull_anomaly_index": round(anomaly_index(pulls_a, low=False), 4),
           "top": {"index": top, "pull": pulls[top], "class": classes[top]}}
    if ctx.audited.modality == "continuous":
        cand = candidate_triggers(tuple(ctx.card["input_shape"]), tuple(ctx.card["value_range"]), count,
                                  np.random.default_rng(ctx.seed))[top]
        out["top"]["trigger"] = cand.to_json()
    return out


# -- stage 3: the toolbox ---------------------------------------------------------------
def not_run(spec: ToolSpec, modality: str) -> str | None:
    """Why the audit does not run a registered tool on this model (None: it does)."""
    if spec.kind != "tool":
        return f"not run: a {spec.kind}" + (" (it needs labelled organisms)" if spec.kind == "skyline" else "")
    if not set(spec.roles) & set(AUDIT_ROLES):
        return f"not an auditor (roles {list(spec.roles)}): the audit runs {', '.join(AUDIT_ROLES)} tools"
    if "continuous_inputs" in spec.needs and modality != "continuous":
        return "not applicable to token inputs: it stamps, blends or optimises continuous inputs"
    return None


def tool_params(name: str, ctx: AuditContext, allowance: float) -> dict[str, Any]:
    """Size a tool's work to its allowance with its registered sizing (unless the caller fixed
    its parameters); raise SkipStage when even the least does not fit."""
    spec = tool_spec(name)
    reason = not_run(spec, ctx.audited.modality)
    if reason:
        raise SkipStage(reason)
    if "trigger" in spec.needs and "trigger" not in ctx.subject.findings.values:
        raise SkipStage("needs the recovered trigger, and no trigger was recovered (Neural Cleanse did not run)")
    if name in ctx.params:
        return dict(ctx.params[name])
    if spec.sizing is None:
        return {}
    try:
        return spec.sizing(Allowance(allowance, ctx.seconds_per_example, len(ctx.data.x), ctx.card["num_classes"]))
    except TooLittleTime as exc:
        raise SkipStage(str(exc)) from exc


def trigger_stage() -> str:
    """The stage of the tool that recovers the trigger for vision models (the registry's provider
    of the ``trigger`` finding: Neural Cleanse)."""
    return f"tool:{provider('trigger', 'vision').name}"


def _probe_trigger(ctx: AuditContext) -> tuple[Trigger | None, str | None]:
    """The best trigger recovered so far (the trigger provider's, else the black-box top stamp)."""
    for stage in (trigger_stage(), "blackbox"):
        data = ctx.results.get(stage, {}).get("data") or {}
        trig = data.get("trigger") or (data.get("top") or {}).get("trigger")
        if trig:
            return Trigger.from_json(trig), stage
    return None, None


def tool_stage(name: str) -> Callable[[AuditContext, float], dict[str, Any]]:
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
                out["trigger_success"] = _trigger_success(ctx, verdict.trigger, verdict.target)
        if "inputs" in spec.roles:
            out["inputs"] = _input_scores(ctx, tool)
        if "localize" in spec.roles:
            out["localize"] = _localize(ctx, tool.localize(subject))
        return out
    return run


def _localize(ctx: AuditContext, units: list[Unit]) -> dict[str, Any]:
    """The top-ranked units, and what zeroing them does to the best recovered trigger's
    success, beside zeroing as many random units from the rest of the ranking."""
    out: dict[str, Any] = {"top_units": [[name, int(i)] for name, i in units[:10]], "ranked": len(units)}
    trigger, origin = _probe_trigger(ctx)
    target = (ctx.results.get(origin or "", {}).get("data") or {}).get("target")
    if origin == "blackbox":
        target = ctx.results["blackbox"]["data"]["top"]["class"]
    if trigger is None or target is None or len(units) < 2 * LOCALIZE_TOP_K:
        return out
    rng = np.random.default_rng(ctx.seed)
    top = units[:LOCALIZE_TOP_K]
    rest = units[LOCALIZE_TOP_K:]
    random_units = [rest[i] for i in rng.choice(len(rest), LOCALIZE_TOP_K, replace=False)]
    success = {"none": _trigger_success(ctx, trigger, target)}
    for label, chosen in (("top", top), ("random", random_units)):
        with intervene(ctx.audited.model, zero_units(chosen)):
            success[label] = _trigger_success(ctx, trigger, target)
    out.update(k=LOCALIZE_TOP_K, trigger_from=origin, target=int(target), trigger_success=success)
    return out


def _trigger_success(ctx: AuditContext, trigger: Trigger, target: int | None) -> float | None:
    """Share of clean inputs (not already predicted as the target) the trigger sends there."""
    if target is None:
        return None
    x = ctx.data.x
    keep = predict(ctx.audited.model, x).argmax(1) != target
    if not keep.any():
        return None
    return float((predict(ctx.audited.model, trigger.apply(x[keep])).argmax(1) == target).float().mean())


def _input_scores(ctx: AuditContext, tool: Any) -> dict[str, Any]:
    """Fit on half the clean data; score the other half, clean and stamped with the best
    recovered trigger: does the detector see that trigger as anomalous?"""
    full = ctx.subject
    half = max(1, len(full.clean_x) // 2)
    if len(full.clean_x) < 4:
        raise SkipStage("needs at least 4 clean inputs (half to fit, half to score)")
    fit_subject = Subject(full.model, full.card, full.clean_x[:half], full.clean_y[:half])
    tool.fit(fit_subject)
    held_out = full.clean_x[half:]
    clean = np.asarray(tool.score(held_out), dtype=float)
    out: dict[str, Any] = {"clean_scores": np.round(clean, 5).tolist()}
    trigger, origin = _probe_trigger(ctx)
    if trigger is not None:
        stamped = np.asarray(tool.score(trigger.apply(held_out)), dtype=float)
        if not (np.isfinite(clean).all() and np.isfinite(stamped).all()):
            raise ModelBehaviourError("the detector returned non-finite scores")
        out.update(stamped_scores=np.round(stamped, 5).tolist(), trigger_from=origin,
                   auroc=float(roc_auc_score(np.r_[np.zeros(len(clean)), np.ones(len(stamped))], np.r_[clean, stamped])))
    return out


def share_finding(ctx: AuditContext, stage: str, record: dict[str, Any]) -> None:
    """A finished stage of a tool that provides a shared finding (Neural Cleanse's recovered
    trigger) hands its answer to the tools after it, computed once, also when resumed."""
    if not stage.startswith("tool:") or record["status"] != "done":
        return
    spec = tool_spec(stage.split(":", 1)[1])
    if spec.provides is not None and record["data"].get("p_planted") is not None:
        ctx.subject.findings.put(spec.provides, Verdict.from_json(record["data"]))


def stage_plan(tools: list[str], modality: str) -> list[tuple[str, Callable[[AuditContext, float], dict[str, Any]], float]]:
    """(name, function, share of the time budget), in the order they run; a tool that cannot
    apply to this model gets no share (it is recorded as skipped, with the reason)."""
    plan: list[tuple[str, Callable[[AuditContext, float], dict[str, Any]], float]] = [
        ("card", card_stage, 0.05), ("blackbox", blackbox_stage, 0.15)]
    for name in tools:
        spec = tool_spec(name)
        plan.append((f"tool:{name}", tool_stage(name), 0.0 if not_run(spec, modality) else spec.audit_share))
    return plan


def stage_order(names: list[str]) -> list[str]:
    """Tools in the order the audit runs them: those that provide a shared finding first, those
    that need one last, the others in the order given."""
    specs = [tool_spec(name) for name in dict.fromkeys(names)]
    return [s.name for s in sorted(specs, key=lambda s: (s.provides is None, "trigger" in s.needs))]


def runnable_tools() -> list[str]:
    """The registry's tools an audit runs: vision auditors (detect, inputs, localize) of kind tool,
    the larger shares of the budget first."""
    specs = [s for s in tool_specs(family="vision") if not_run(s, "continuous") is None]
    return stage_order([s.name for s in sorted(specs, key=lambda s: (-s.audit_share, s.name))])
