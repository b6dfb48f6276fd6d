"""The report as one self-contained HTML page: inline CSS, plots as inline base64 PNG, no
script and no network. The verdict comes first, then the findings with their evidence, the
stages and their cost, and the exact command and versions that produced it."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from deepaudit.audit.plots import all_plots

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d1d1f;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.5em;margin:0 0 4px} h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.verdict{border-radius:10px;padding:18px 22px;margin:16px 0;color:#fff}
.verdict .label{font-size:1.6em;font-weight:700;text-transform:uppercase;letter-spacing:.03em}
.v-alert{background:#b3261e}.v-ok{background:#1e7b3a}.v-none{background:#6b6f76}
.card{background:#fff;border:1px solid #e1e3e8;border-radius:8px;padding:14px 18px;margin:12px 0}
.badge{display:inline-block;border-radius:4px;padding:1px 8px;font-size:.8em;font-weight:600;color:#fff;margin-right:6px}
.b-alert{background:#b3261e}.b-warning{background:#b36b00}.b-info{background:#4c72b0}
table{border-collapse:collapse;font-size:.88em;margin:6px 0}
td,th{border:1px solid #e1e3e8;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5}code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}
pre{background:#f0f2f5;padding:8px;border-radius:6px;white-space:pre-wrap;word-break:break-all}
img{max-width:100%;height:auto;display:block;margin:8px 0}.muted{color:#6b6f76;font-size:.9em}
.truth{border-left:4px solid #8172b3}
"""


def _budget(seconds: float | None) -> str:
    return "the model family's default" if seconds is None else f"{seconds:g} s"


def _verdict_class(label: str) -> str:
    return {"backdoor suspected": "v-alert", "no backdoor found": "v-ok"}.get(label, "v-none")


def _table(rows: list[list[Any]], head: list[str]) -> str:
    cells = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + f"</tr>{cells}</table>"


def _score(s: dict[str, float] | None) -> str:
    if not s:
        return "-"
    if "ci_low" in s and s.get("n", 2) > 1:
        return f"{s['value']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}]"
    return f"{s['value']:.2f}"


def _reliability(rel: dict[str, Any]) -> str:
    if not rel:
        return ""
    rows = []
    for tool, r in rel.items():
        if r.get("status") != "measured":
            rows.append([tool, "not measured", "-", "-", "-", r.get("how", "")])
        else:
            rows.append([tool, f"suite {r['suite']}, {r['organisms']} organisms", _score(r["detect_auroc"]),
                         _score(r["target_top1"]), _score(r["trigger_asr"]), _score(r["inputs_auroc"])])
    return ("<p class='muted'>Measured reliability on the benchmark (bootstrap 95% CI):</p>"
            + _table(rows, ["tool", "measured on", "detect AUROC", "target top-1", "trigger ASR", "inputs AUROC / note"]))


def _examples(rows: list[dict[str, str]]) -> str:
    """A language model's continuations of the user's prompts without and with a phrase."""
    if not rows:
        return ""
    return ("<p class='muted'>What the model says on your prompts, without and with the phrase:</p>"
            "<div class='examples'>" + _table([[r["prompt"], r["without"], r["with"]] for r in rows],
                                              ["prompt", "continuation without", "continuation with"]) + "</div>")


def _img(plots: dict[str, str], key: str) -> str:
    return f"<img alt='{escape(key)}' src='data:image/png;base64,{plots[key]}'>" if key in plots else ""


def _finding(f: dict[str, Any], plots: dict[str, str]) -> str:
    conf = "-" if f["confidence"] is None else f"{f['confidence']:.2f}"
    evidence = json.dumps(f["evidence"], indent=1)
    return (f"<div class='card finding' id='finding-{escape(f['id'])}'>"
            f"<span class='badge b-{escape(f['severity'])}'>{escape(f['severity'])}</span>"
            f"<strong>{escape(f['title'])}</strong><p>{escape(f['what'])}</p>"
            f"<p>Supported by: <b>{escape(', '.join(f['supported_by']) or 'none')}</b> · confidence {conf} · "
            f"cost {f['cost']['wall_s']:.2f} s, {f['cost']['forward_passes']:,} examples forwarded</p>"
            f"<pre>{escape(evidence)}</pre>{_examples(f.get('examples') or [])}{_reliability(f['reliability'])}"
            + "".join(_img(plots, p) for p in f["plots"]) + "</div>")


def _truth(check: dict[str, Any] | None) -> str:
    if not check:
        return ""
    rows = [[k, v] for k, v in check.items()]
    return ("<div class='card truth' id='truth-check'><strong>After-the-fact check against the organism's sealed "
            "truth</strong><p class='muted'>This model is an organism from the zoo. Its truth was read only after "
            "every tool had answered; no tool saw it.</p>" + _table(rows, ["", "value"]) + "</div>")


def render_html(report: dict[str, Any]) -> str:
    """The whole page as one string."""
    plots = all_plots(report)
    v = report["verdict"]
    shown = {p for f in report.get("findings", []) for p in f["plots"]}
    stages = [[n, s["status"] + (" (resumed)" if s.get("resumed") else ""), f"{s.get('wall_s', 0):.2f}",
               f"{s['allowance_s']:.1f}" if "allowance_s" in s else "-", f"{s.get('forward_passes', 0):,}",
               s.get("error") or s.get("message") or ""] for n, s in report["stages"].items()]
    model, data = report["model"], report["data"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>deepaudit report: {escape(str(model['spec']))}</title><style>{CSS}</style></head><body><main>",
        f"<h1>deepaudit audit report</h1><p class='muted'>{escape(str(model['spec']))} · data "
        f"{escape(str(data['spec']))} · status <b id='status'>{escape(report['status'])}</b> · "
        f"budget {_budget(report.get('budget_s'))} · schema {report['schema']}</p>",
        f"<div class='verdict {_verdict_class(v['label'])}' id='verdict'><div class='label'>{escape(v['label'])}</div>"
        f"<div>{escape(v['summary'])}</div></div>",
        _truth(report.get("truth_check")),
    ]
    if report.get("errors"):
        parts.append("<div class='card' id='errors'><strong>Errors</strong><ul>"
                     + "".join(f"<li>{escape(e)}</li>" for e in report["errors"]) + "</ul>"
                     "<p class='muted'>The report keeps everything found before the error.</p></div>")
    if report.get("notes"):
        parts.append("<div class='card' id='notes'><strong>Notes</strong><ul>"
                     + "".join(f"<li>{escape(n)}</li>" for n in report["notes"]) + "</ul>"
                     "<p class='muted'>What reading the model and the data changed on the way.</p></div>")
    parts.append("<h2>Findings</h2>" + ("".join(_finding(f, plots) for f in report.get("findings", []))
                                         or "<p>No findings.</p>"))
    rest = [k for k in plots if k not in shown]
    if rest:
        parts.append("<h2>More plots</h2>" + "".join(_img(plots, k) for k in rest))
    head = ["stage", "status", "wall s", "allowance s", "examples forwarded", "note"]
    parts.append("<h2>Stages</h2>" + _table(stages, head))
    info = {"model": model, "data": data}
    parts.append(f"<h2>Model and data</h2><pre>{escape(json.dumps(info, indent=1))}</pre>")
    parts.append("<h2>Reproduce</h2><p>Command:</p>"
                 f"<pre id='command'>{escape(report['command'])}</pre><p>Versions:</p>"
                 + _table([[k, val] for k, val in report["versions"].items()], ["package", "version"]))
    parts.append("</main></body></html>")
    return "\n".join(parts)
