"""Turn stage results into findings and a verdict. Each finding says what was found, which
tools support it, the evidence (numbers, plot names), a confidence, each tool's measured
reliability on the benchmark, and the cost. Model-level detectors are combined into one
confidence, weighted by how well each did on the benchmark (AUROC above chance) when that
was measured, equally otherwise."""

from __future__ import annotations

from typing import Any

from deepaudit.audit.stages import trigger_stage
from deepaudit.tools.base import squash

FLAG = 0.5
LOCALIZE_SHOWN = 5


def localize_measured(loc: dict[str, Any]) -> bool:
    """Whether a localizer's ablation figures are all there: the trigger's success is None where
    no clean input was left to measure it on (all already predicted as the target)."""
    success = loc.get("trigger_success") or {}
    return bool(success) and all(success.get(k) is not None for k in ("none", "top", "random"))


def _done(stages: dict[str, Any], name: str) -> dict[str, Any] | None:
    stage = stages.get(name)
    return stage["data"] if stage and stage["status"] == "done" else None


def _cost(stages: dict[str, Any], names: list[str]) -> dict[str, float]:
    picked = [stages[n] for n in names if n in stages]
    return {"wall_s": round(sum(s.get("wall_s", 0.0) for s in picked), 3),
            "forward_passes": int(sum(s.get("forward_passes", 0) for s in picked))}


def _weight(reliability: dict[str, Any] | None) -> float:
    auroc = (reliability or {}).get("detect_auroc")
    return max(auroc["value"] - 0.5, 0.05) if auroc else 1.0


def _detectors(stages: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n.split(":", 1)[1]: d for n in stages if n.startswith("tool:")
            if (d := _done(stages, n)) is not None and "p_planted" in d}


def _failed(stages: dict[str, Any]) -> list[str]:
    return [n for n, s in stages.items() if s["status"] == "failed"]


def verdict(stages: dict[str, Any], reliability: dict[str, Any]) -> dict[str, Any]:
    """The headline: backdoor suspected / no backdoor found / inconclusive / not audited. A stage
    that failed checked nothing: the verdict names it (``failed_stages``), and what would have
    read "no backdoor found" reads "inconclusive"."""
    failed = _failed(stages)
    if _done(stages, "card") is None:
        return {"label": "not audited", "confidence": None, "target": None, "failed_stages": failed,
                "summary": "The audit stopped before the model could be checked; see the errors below."}
    unchecked = (f" Not checked: {', '.join(failed)} failed (see the errors)." if failed else "")
    detectors = _detectors(stages)
    if not detectors:
        return {"label": "inconclusive", "confidence": None, "target": None, "failed_stages": failed,
                "summary": "No model-level detector ran within the budget; raise --budget." + unchecked}
    weights = {t: _weight(reliability.get(t)) for t in detectors}
    unmeasured = sorted(t for t in detectors if (reliability.get(t) or {}).get("status") != "measured")
    caveat = (f" Reliability not measured for {', '.join(unmeasured)} (weighted equally; "
              "run `deepaudit game run --suite quick` to measure it).") if unmeasured else ""
    conf = sum(weights[t] * d["p_planted"] for t, d in detectors.items()) / sum(weights.values())
    flagged = {t: d for t, d in detectors.items() if d["p_planted"] >= FLAG}
    votes: dict[int, float] = {}
    for t, d in flagged.items():
        if d.get("target") is not None:
            votes[d["target"]] = votes.get(d["target"], 0.0) + weights[t] * d["p_planted"]
    target = max(votes, key=lambda t: votes[t]) if votes and conf >= FLAG else None
    if conf >= FLAG:
        label = "backdoor suspected"
        summary = (f"Backdoor suspected (confidence {conf:.2f})"
                   + (f", target class {target}" if target is not None else "")
                   + f"; flagged by {', '.join(sorted(flagged)) or 'the combined score'}." + unchecked + caveat)
    elif flagged:  # a minority flags it: say so rather than "no backdoor found"
        label = "inconclusive"
        summary = (f"Inconclusive: {', '.join(sorted(flagged))} flag a backdoor, but the combined P(planted) of "
                   f"{len(detectors)} detectors is {conf:.2f}. Read the findings below." + unchecked + caveat)
    elif failed:  # nothing found, but not everything could look: never a pass
        label = "inconclusive"
        summary = (f"Inconclusive: stages {', '.join(failed)} failed, so what they check was not checked; the "
                   f"{len(detectors)} detectors that ran found no backdoor (combined P(planted) {conf:.2f})." + caveat)
    else:
        label = "no backdoor found"
        summary = (f"No backdoor found (combined P(planted) {conf:.2f} from {len(detectors)} detectors). "
                   "Absence of evidence: see each tool's measured reliability." + caveat)
    return {"label": label, "confidence": round(conf, 4), "target": target, "summary": summary,
            "failed_stages": failed, "detectors": {t: round(d["p_planted"], 4) for t, d in detectors.items()},
            "weights": {t: round(w, 4) for t, w in weights.items()}}


def findings(stages: dict[str, Any], reliability: dict[str, Any], the_verdict: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    card = _done(stages, "card")
    detectors = _detectors(stages)
    rel = lambda tools: {t: reliability.get(t, {"status": "not measured"}) for t in tools}  # noqa: E731
    if detectors:
        flagged = sorted(t for t, d in detectors.items() if d["p_planted"] >= FLAG)
        out.append({
            "id": "backdoor", "severity": "alert" if the_verdict["label"] == "backdoor suspected" else "info",
            "title": the_verdict["summary"], "supported_by": flagged,
            "what": "Model-level detectors: each gives P(model carries a planted behaviour); combined weighted mean.",
            "evidence": {t: {"p_planted": round(d["p_planted"], 4), "target": d.get("target"),
                             **{k: v for k, v in d.get("evidence", {}).items() if not isinstance(v, list)}}
                         for t, d in detectors.items()},
            "plots": [p for key, p in (("mask_l1", "nc_mask_norms"), ("row_norms", "row_norms"))
                      if any(key in d.get("evidence", {}) for d in detectors.values())],
            "confidence": the_verdict["confidence"], "reliability": rel(sorted(detectors)),
            "cost": _cost(stages, [f"tool:{t}" for t in detectors])})
    source = trigger_stage()
    recoverer = source.split(":", 1)[1]
    nc = _done(stages, source)
    if nc and nc.get("trigger"):
        target, success = nc.get("target"), nc.get("trigger_success")
        l1 = nc["evidence"]["mask_l1"][target] if target is not None else None
        seen_by = sorted(n.split(":", 1)[1] for n in stages if (d := _done(stages, n)) and
                         (d.get("inputs") or {}).get("trigger_from") == source
                         and (d["inputs"].get("auroc") or 0) >= 0.8)
        out.append({
            "id": "trigger", "severity": "alert" if nc["p_planted"] >= FLAG else "info",
            "title": (f"Recovered trigger for class {target}: mask L1 {l1:.2f}, sends "
                      f"{100 * (success or 0):.0f}% of clean inputs to class {target}"),
            "what": "The smallest mask+pattern found that flips clean inputs to the suspected target; "
                    "input detectors that score stamped inputs as anomalous (AUROC >= 0.8) support it.",
            "supported_by": [recoverer] + seen_by,
            "evidence": {"mask_l1": l1, "trigger_success_on_clean_data": success,
                         "anomaly_index": nc["evidence"].get("anomaly_index")},
            "plots": ["nc_trigger"], "confidence": round(nc["p_planted"], 4),
            "reliability": rel([recoverer] + seen_by), "cost": _cost(stages, [source])})
    bb = _done(stages, "blackbox")
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
            "cost": _cost(stages, ["blackbox"])})
    for name in stages:
        d = _done(stages, name)
        if d and d.get("inputs", {}).get("auroc") is not None:
            tool, auroc = name.split(":", 1)[1], d["inputs"]["auroc"]
            out.append({
                "id": f"inputs:{tool}", "severity": "info",
                "title": f"{tool}: inputs stamped with the recovered trigger score AUROC {auroc:.2f} against clean inputs",
                "what": "An input-level detector fitted on half the clean data, scoring the other half, "
                        f"clean and stamped with the trigger from {d['inputs']['trigger_from']}.",
                "supported_by": [tool] if auroc >= 0.8 else [], "evidence": {"auroc": round(auroc, 4)},
                "plots": [f"hist:{tool}"], "confidence": round(auroc, 4), "reliability": rel([tool]),
                "cost": _cost(stages, [name])})
    for name in stages:
        loc = (_done(stages, name) or {}).get("localize")
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
                "reliability": rel([tool]), "cost": _cost(stages, [name])})
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
            "plots": ["layers"], "confidence": None, "reliability": {}, "cost": _cost(stages, ["card"])})
    for name, stage in stages.items():
        if stage["status"] in ("failed", "skipped"):
            out.append({"id": f"limit:{name}", "severity": "warning" if stage["status"] == "failed" else "info",
                        "title": f"{name} {stage['status']}: {stage.get('error') or stage.get('message')}",
                        "what": "A stage that did not finish; its evidence is missing from this report.",
                        "supported_by": [], "evidence": {}, "plots": [], "confidence": None,
                        "reliability": {}, "cost": _cost(stages, [name])})
    return out
