"""Turn stage results into findings and a verdict. Each finding says what was found, which
tools support it, the evidence (numbers, plot names), a confidence, each tool's measured
reliability on the benchmark, and the cost. The verdict is the answer of the family's verdict
tool where the family has one (``deepaudit.verdicts``: the best unsupervised combination on its
benchmark, with thresholds chosen there); otherwise the model-level detectors are combined into
one confidence, weighted by how well each did on the benchmark (AUROC above chance) when that
was measured, equally otherwise."""

from __future__ import annotations

from typing import Any

from deepaudit.verdicts import BLIND_SPOTS, CLEARED, INCONCLUSIVE, SUSPECTED, Thresholds, thresholds

FLAG = 0.5


def done(stages: dict[str, Any], name: str) -> dict[str, Any] | None:
    stage = stages.get(name)
    return stage["data"] if stage and stage["status"] == "done" else None


def cost(stages: dict[str, Any], names: list[str]) -> dict[str, float]:
    picked = [stages[n] for n in names if n in stages]
    return {"wall_s": round(sum(s.get("wall_s", 0.0) for s in picked), 3),
            "forward_passes": int(sum(s.get("forward_passes", 0) for s in picked))}


def reliability_of(reliability: dict[str, Any], tools: list[str]) -> dict[str, Any]:
    """Each tool's measured reliability, as the report shows it beside a finding."""
    return {t: reliability.get(t, {"status": "not measured"}) for t in tools}


def seen_by(stages: dict[str, Any], source: str, least: float = 0.8) -> list[str]:
    """The input detectors that tell inputs carrying the trigger recovered by stage ``source``
    from clean ones (AUROC at least ``least``): they support that trigger."""
    return sorted(n.split(":", 1)[1] for n in stages if (d := done(stages, n))
                  and (d.get("inputs") or {}).get("trigger_from") == source and (d["inputs"].get("auroc") or 0) >= least)


def _weight(reliability: dict[str, Any] | None) -> float:
    auroc = (reliability or {}).get("detect_auroc")
    return max(auroc["value"] - 0.5, 0.05) if auroc else 1.0


def _detectors(stages: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n.split(":", 1)[1]: d for n in stages if n.startswith("tool:")
            if (d := done(stages, n)) is not None and "p_planted" in d}


def _failed(stages: dict[str, Any]) -> list[str]:
    return [n for n, s in stages.items() if s["status"] == "failed"]


def _blind(family: str) -> str:
    """What the family's detectors are known not to find (said beside "no backdoor found")."""
    return f" {BLIND_SPOTS[family]}" if family in BLIND_SPOTS else ""


def _decided(tool: str, answer: dict[str, Any], rule: Thresholds, failed: list[str], unchecked: str,
             others: dict[str, dict[str, Any]], family: str) -> dict[str, Any]:
    """The verdict read from the family's verdict tool by its thresholds; the other detectors are
    listed beside it (their findings stay in the report), not averaged in."""
    conf = float(answer["p_planted"])
    label = rule.label(conf)
    if label == CLEARED and failed:  # nothing found, but not everything could look: never a pass
        label = INCONCLUSIVE
    target = answer.get("target") if label == SUSPECTED else None
    how = (f"{tool} P(planted) {conf:.6g}; backdoor suspected from {rule.suspect:.4g}, no backdoor found below "
           f"{rule.clear:.4g} ({rule.chosen})")
    summary = {SUSPECTED: "Backdoor suspected" + (f", target class {target}" if target is not None else ""),
               CLEARED: "No backdoor found (absence of evidence: see the measured reliability)",
               INCONCLUSIVE: "Inconclusive"}[label] + f": {how}." + unchecked + (_blind(family) if label == CLEARED else "")
    return {"label": label, "confidence": round(conf, 4), "target": target, "summary": summary,
            "failed_stages": failed, "decided_by": tool, "thresholds": {"suspect": rule.suspect, "clear": rule.clear},
            "detectors": {t: round(d["p_planted"], 4) for t, d in {tool: answer, **others}.items()}}


def verdict(stages: dict[str, Any], reliability: dict[str, Any], family: str = "") -> dict[str, Any]:
    """The headline: backdoor suspected / no backdoor found / inconclusive / not audited. A stage
    that failed checked nothing: the verdict names it (``failed_stages``), and what would have
    read "no backdoor found" reads "inconclusive"."""
    failed = _failed(stages)
    if done(stages, "card") is None:
        return {"label": "not audited", "confidence": None, "target": None, "failed_stages": failed,
                "summary": "The audit stopped before the model could be checked; see the errors below."}
    unchecked = (f" Not checked: {', '.join(failed)} failed (see the errors)." if failed else "")
    detectors = _detectors(stages)
    unsure = {t: reason for t, d in detectors.items() if (reason := (d.get("evidence") or {}).get("inconclusive"))}
    detectors = {t: d for t, d in detectors.items() if t not in unsure}
    rule = thresholds(family, card=(done(stages, "card") or {}).get("card"))
    if rule.tool in detectors:
        return _decided(rule.tool, detectors[rule.tool], rule, failed, unchecked,
                        {t: d for t, d in detectors.items() if t != rule.tool}, family)
    if not detectors and unsure:
        why = " ".join(f"{t}: {reason}." for t, reason in sorted(unsure.items()))
        return {"label": "inconclusive", "confidence": None, "target": None, "failed_stages": failed,
                "summary": f"Inconclusive: the detectors that ran cannot decide on this model. {why}" + unchecked,
                "inconclusive": unsure}
    if not detectors:
        return {"label": "inconclusive", "confidence": None, "target": None, "failed_stages": failed,
                "summary": "No model-level detector ran within the budget; raise --budget." + unchecked}
    weights = {t: _weight(reliability.get(t)) for t in detectors}
    unmeasured = sorted(t for t in detectors if (reliability.get(t) or {}).get("status") != "measured")
    how = (reliability.get(unmeasured[0]) or {}).get("how", "run the game to measure it") if unmeasured else ""
    caveat = f" Reliability not measured for {', '.join(unmeasured)} (weighted equally; {how})." if unmeasured else ""
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
                   "Absence of evidence: see each tool's measured reliability." + caveat + _blind(family))
    return {"label": label, "confidence": round(conf, 4), "target": target, "summary": summary,
            "failed_stages": failed, "detectors": {t: round(d["p_planted"], 4) for t, d in detectors.items()},
            "weights": {t: round(w, 4) for t, w in weights.items()}}


def findings(stages: dict[str, Any], reliability: dict[str, Any], the_verdict: dict[str, Any],
             family: Any = None) -> list[dict[str, Any]]:
    """The findings a user reads: the detectors' combined verdict, the family's own findings
    (``family.findings``: the recovered trigger, black-box probes, input detectors, localizers,
    the card), and every stage that did not finish."""
    out: list[dict[str, Any]] = []
    detectors = _detectors(stages)
    if detectors:
        flagged = sorted(t for t, d in detectors.items() if d["p_planted"] >= FLAG)
        out.append({
            "id": "backdoor", "severity": "alert" if the_verdict["label"] == "backdoor suspected" else "info",
            "title": the_verdict["summary"], "supported_by": flagged,
            "what": "Model-level detectors: each gives P(model carries a planted behaviour); " + (
                f"the verdict is {the_verdict['decided_by']}'s, read by thresholds chosen on the benchmark."
                if the_verdict.get("decided_by") else "combined weighted mean."),
            "evidence": {t: {"p_planted": round(d["p_planted"], 4), "target": d.get("target"),
                             **{k: v for k, v in d.get("evidence", {}).items() if not isinstance(v, list)}}
                         for t, d in detectors.items()},
            "plots": [p for key, p in (("mask_l1", "nc_mask_norms"), ("row_norms", "row_norms"))
                      if any(key in d.get("evidence", {}) for d in detectors.values())],
            "confidence": the_verdict["confidence"], "reliability": reliability_of(reliability, sorted(detectors)),
            "cost": cost(stages, [f"tool:{t}" for t in detectors])})
    if family is not None:
        out += family.findings(stages, reliability)
    for name, stage in stages.items():
        if stage["status"] in ("failed", "skipped"):
            out.append({"id": f"limit:{name}", "severity": "warning" if stage["status"] == "failed" else "info",
                        "title": f"{name} {stage['status']}: {stage.get('error') or stage.get('message')}",
                        "what": "A stage that did not finish; its evidence is missing from this report.",
                        "supported_by": [], "evidence": {}, "plots": [], "confidence": None,
                        "reliability": {}, "cost": cost(stages, [name])})
    return out
