"""The audit of a classifier (the ``vision`` family: images, signals, and text classifiers
read as token ids): its card and sanity checks, black-box probes with random stamps, what the
audit adds to each tool's answer (the recovered trigger's success on the clean data, input
detectors' scores on stamped inputs, what zeroing the localized units does), and the findings."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from deepaudit.audit.findings import cost, done, reliability_of, seen_by
from deepaudit.audit.source import complete_card
from deepaudit.audit.stages import AuditContext, ModelBehaviourError, SkipStage
from deepaudit.errors import DataError
from deepaudit.internals import intervene
from deepaudit.internals.ablation import Unit, zero_units
from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict, anomaly_index, squash
from deepaudit.tools.mahalanobis import candidate_triggers
from deepaudit.tools.registry import ToolSpec, provider
from deepaudit.tools.sizing import Allowance
from deepaudit.triggers import Trigger

STATS_INPUTS = 256
NOISE_LEVELS = (0.05, 0.1, 0.2)
LOCALIZE_TOP_K = 5
LOCALIZE_SHOWN = 5
FLAG = 0.5
DEFAULT_BUDGET_S = 120.0
DEFAULT_MAX_INPUTS = 256  # the game's trusted budget, at which the verdict's thresholds were chosen (deepaudit.verdicts)
RELIABILITY_SUITES = ("standard", "quick")  # the game suites whose leaderboard weighs the tools


def subject(ctx: AuditContext) -> Subject:
    """The model, its card, the clean data; labels are the user's, or the model's own
    predictions when none were given."""
    y = ctx.data.y if ctx.data.y is not None else predict(ctx.audited.model, ctx.data.x).argmax(1)
    return Subject(ctx.audited.model, ctx.card, ctx.data.x, y)


def not_applicable(spec: ToolSpec, ctx: AuditContext) -> str | None:
    if "continuous_inputs" in spec.needs and ctx.audited.modality != "continuous":
        return "not applicable to token inputs: it stamps, blends or optimises continuous inputs"
    return None


def allowance(ctx: AuditContext, seconds: float) -> Allowance:
    return Allowance(seconds, ctx.seconds_per_example, len(ctx.data.x), ctx.card["num_classes"])


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


# -- what the audit adds to a tool's answer ------------------------------------------------
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


def detected(ctx: AuditContext, verdict: Verdict) -> dict[str, Any]:
    """A recovered stamp's success on the clean data."""
    if not isinstance(verdict.trigger, Trigger):
        return {}
    return {"trigger_success": _trigger_success(ctx, verdict.trigger, verdict.target)}


def localized(ctx: AuditContext, units: list[Unit]) -> dict[str, Any]:
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


def input_scores(ctx: AuditContext, tool: Any) -> dict[str, Any]:
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




def localize_measured(loc: dict[str, Any]) -> bool:
    """Whether a localizer's ablation figures are all there: the trigger's success is None where
    no clean input was left to measure it on (all already predicted as the target)."""
    success = loc.get("trigger_success") or {}
    return bool(success) and all(success.get(k) is not None for k in ("none", "top", "random"))


def findings(stages: dict[str, Any], reliability: dict[str, Any]) -> list[dict[str, Any]]:
    """The classifier findings: the recovered trigger, the black-box probes, input detectors and
    localizers on that trigger, the model card."""
    out: list[dict[str, Any]] = []
    card = done(stages, "card")
    source = trigger_stage()
    recoverer = source.split(":", 1)[1]
    nc = done(stages, source)
    if nc and nc.get("trigger"):
        target, success = nc.get("target"), nc.get("trigger_success")
        l1 = nc["evidence"]["mask_l1"][target] if target is not None else None
        supporters = seen_by(stages, source)
        out.append({
            "id": "trigger", "severity": "alert" if nc["p_planted"] >= FLAG else "info",
            "title": (f"Recovered trigger for class {target}: mask L1 {l1:.2f}, sends "
                      f"{100 * (success or 0):.0f}% of clean inputs to class {target}"),
            "what": "The smallest mask+pattern found that flips clean inputs to the suspected target; "
                    "input detectors that score stamped inputs as anomalous (AUROC >= 0.8) support it.",
            "supported_by": [recoverer] + supporters,
            "evidence": {"mask_l1": l1, "trigger_success_on_clean_data": success,
                         "anomaly_index": nc["evidence"].get("anomaly_index")},
            "plots": ["nc_trigger"], "confidence": round(nc["p_planted"], 4),
            "reliability": reliability_of(reliability, [recoverer] + supporters), "cost": cost(stages, [source])})
    bb = done(stages, "blackbox")
    if bb:
        index, top = bb["pull_anomaly_index"], bb["top"]
        suspicious = index >= 3.0 and top["pull"] >= 0.3
        out.append({
            "id": "blackbox", "severity": "warning" if suspicious else "info",
            "title": (f"A random stamp sends {100 * top['pull']:.0f}% of inputs to class {top['class']} "
                      f"(anomaly index {index:.1f} among {bb['candidates']} random stamps)") if suspicious else
                     (f"Black-box probes: no random stamp stands out (anomaly index {index:.1f}); "
                      f"noise flips {100 * bb['noise'][-1]['flip_rate']:.0f}% of predictions "
                      f"at level {bb['noise'][-1]['level']}"),
            "what": "Outputs under perturbed inputs: random noise, and random candidate trigger stamps; "
                    "a stamp that pulls many inputs to one class is trigger-like.",
            "supported_by": ["blackbox"] if suspicious else [],
            "evidence": {"pull_anomaly_index": index, "top_pull": top["pull"], "top_class": top["class"],
                         "noise_flip_rates": {str(n["level"]): round(n["flip_rate"], 4) for n in bb["noise"]}},
            "plots": ["blackbox"], "confidence": round(squash(index, 3.0), 4),
            "reliability": {"blackbox": {"status": "not measured", "how": "not a game tool"}},
            "cost": cost(stages, ["blackbox"])})
    for name in stages:
        d = done(stages, name)
        if d and d.get("inputs", {}).get("auroc") is not None:
            tool, auroc = name.split(":", 1)[1], d["inputs"]["auroc"]
            out.append({
                "id": f"inputs:{tool}", "severity": "info",
                "title": f"{tool}: inputs stamped with the recovered trigger score AUROC {auroc:.2f} against clean inputs",
                "what": "An input-level detector fitted on half the clean data, scoring the other half, "
                        f"clean and stamped with the trigger from {d['inputs']['trigger_from']}.",
                "supported_by": [tool] if auroc >= 0.8 else [], "evidence": {"auroc": round(auroc, 4)},
                "plots": [f"hist:{tool}"], "confidence": round(auroc, 4), "reliability": reliability_of(reliability, [tool]),
                "cost": cost(stages, [name])})
    for name in stages:
        loc = (done(stages, name) or {}).get("localize")
        if loc:
            tool = name.split(":", 1)[1]
            units = ", ".join(f"{u}[{i}]" for u, i in loc["top_units"][:LOCALIZE_SHOWN])
            success = loc.get("trigger_success")
            measured = localize_measured(loc)
            effect = (f"; zeroing the top {loc['k']} lowers the recovered trigger's success from "
                      f"{100 * success['none']:.0f}% to {100 * success['top']:.0f}% "
                      f"({loc['k']} random units: {100 * success['random']:.0f}%)") if measured else ""
            if success and not measured:
                effect = ("; the recovered trigger's success with units zeroed is not measurable (every clean input "
                          f"is already predicted as class {loc.get('target')})")
            drop = success["random"] - success["top"] if measured else None
            out.append({
                "id": f"localize:{tool}", "severity": "info", "title": f"{tool}: most responsible units {units}{effect}",
                "what": "A localizer ranks hidden units; zeroing its top units should disable the recovered "
                        "trigger more than zeroing random units of the same model.",
                "supported_by": [tool] if drop is not None and drop >= 0.3 else [],
                "evidence": loc, "plots": [f"localize:{tool}"] if measured else [],
                "confidence": None if drop is None else round(max(drop, 0.0), 4),
                "reliability": reliability_of(reliability, [tool]), "cost": cost(stages, [name])})
    if card:
        acc = card.get("accuracy")
        k = card["card"]["num_classes"]
        near_chance = acc is not None and acc < 2.0 / k
        out.append({
            "id": "sanity", "severity": "warning" if near_chance else "info",
            "title": (f"{card['parameters']:,} parameters, {len(card['layers'])} layers; "
                      + (f"accuracy {100 * acc:.1f}% on the clean data" if acc is not None else "no labels given")
                      + (" (near chance: do the labels match the outputs?)" if near_chance else "")),
            "what": "Model card and sanity checks: parameters, layers, finite activations, accuracy.",
            "supported_by": [], "evidence": {"accuracy": acc, "parameters": card["parameters"], "classes": k},
            "plots": ["layers"], "confidence": None, "reliability": {}, "cost": cost(stages, ["card"])})
    return out
