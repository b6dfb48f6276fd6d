"""The report's plots, drawn from the report's numbers with matplotlib (no pyplot state) and
inlined as base64 PNG, so that the HTML page needs no network and no side files."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from deepaudit.audit.vision import localize_measured

DPI = 90


def plain(text: str) -> str:
    """Text that matplotlib draws as written: a ``$`` would start mathtext, and a layer named
    ``$\\x$`` would make the plot (and every rewrite of the report) raise."""
    return str(text).replace("$", r"\$")


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _show(ax, array: np.ndarray, title: str, cmap: str = "viridis") -> None:
    """An image for 2-D inputs (channels averaged), a line for 1-D ones."""
    a = np.asarray(array, dtype=float)
    if a.ndim == 3:
        a = a.mean(0)
    if a.ndim == 2 and a.shape[0] > 1:
        im = ax.imshow(a, cmap=cmap)
        ax.figure.colorbar(im, ax=ax, fraction=0.046)
        ax.set_xticks([]), ax.set_yticks([])
    else:
        ax.plot(a.reshape(-1))
    ax.set_title(title, fontsize=9)


def layers_plot(card: dict[str, Any]) -> str:
    stats = card["layers"]
    names = [plain(s["layer"]) for s in stats]
    fig = Figure(figsize=(9, 0.28 * len(names) + 1.5))
    ax1, ax2, ax3 = fig.subplots(1, 3, sharey=True)
    y = np.arange(len(names))
    ax1.barh(y, [s["std"] or 0 for s in stats], color="#4c72b0")
    ax1.set_yticks(y, names, fontsize=7), ax1.invert_yaxis(), ax1.set_title("activation sd", fontsize=9)
    ax2.barh(y, [s["zero_share"] for s in stats], color="#dd8452")
    ax2.set_title("share of zero activations", fontsize=9)
    ax3.barh(y, [s["parameters"] for s in stats], color="#55a868")
    ax3.set_title("parameters", fontsize=9)
    fig.suptitle("Per-layer statistics on the clean data", fontsize=10)
    return _png(fig)


def predictions_plot(card: dict[str, Any]) -> str:
    hist = card["prediction_histogram"]
    fig = Figure(figsize=(5, 2.5))
    ax = fig.subplots()
    ax.bar(range(len(hist)), hist, color="#4c72b0")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("clean inputs")
    ax.set_title("Predictions on the clean data", fontsize=9)
    return _png(fig)


def blackbox_plot(bb: dict[str, Any]) -> str:
    has_trigger = "trigger" in bb["top"]
    fig = Figure(figsize=(11 if has_trigger else 8, 2.8))
    axes = fig.subplots(1, 3 if has_trigger else 2)
    axes[0].plot([n["level"] for n in bb["noise"]], [n["flip_rate"] for n in bb["noise"]], "o-")
    axes[0].set_xlabel("noise level (share of value range)"), axes[0].set_ylabel("predictions flipped")
    axes[0].set_title("Robustness to noise", fontsize=9)
    axes[1].hist(bb["pulls"], bins=20, color="#8172b3")
    axes[1].axvline(bb["top"]["pull"], color="red", ls="--", label=f"top: class {bb['top']['class']}")
    axes[1].set_xlabel("share of inputs pulled to one class"), axes[1].legend(fontsize=7)
    axes[1].set_title(f"{bb['candidates']} random stamps (anomaly index {bb['pull_anomaly_index']:.1f})", fontsize=9)
    if has_trigger:
        trig = bb["top"]["trigger"]
        _show(axes[2], np.asarray(trig["mask"])[None] * np.asarray(trig["pattern"]), "top stamp (mask x pattern)")
    return _png(fig)


def trigger_plot(nc: dict[str, Any], tool: str) -> str:
    mask, pattern = np.asarray(nc["trigger"]["mask"]), np.asarray(nc["trigger"]["pattern"])
    fig = Figure(figsize=(10, 2.8))
    axes = fig.subplots(1, 3)
    _show(axes[0], mask, f"mask (L1 {mask.sum():.2f})", "gray")
    _show(axes[1], pattern, "pattern")
    _show(axes[2], mask[None] * pattern, "mask x pattern")
    fig.suptitle(f"Recovered trigger for class {nc['target']} ({plain(tool)})", fontsize=10)
    return _png(fig)


def bars_plot(values: list[float], highlight: int | None, title: str, ylabel: str) -> str:
    fig = Figure(figsize=(5, 2.6))
    ax = fig.subplots()
    colors = ["#c44e52" if i == highlight else "#4c72b0" for i in range(len(values))]
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xlabel("class"), ax.set_ylabel(ylabel), ax.set_title(plain(title), fontsize=9)
    return _png(fig)


def histogram_plot(inputs: dict[str, Any], tool: str) -> str:
    fig = Figure(figsize=(5, 2.6))
    ax = fig.subplots()
    clean = np.asarray(inputs["clean_scores"])
    stamped = np.asarray(inputs.get("stamped_scores", []))
    bins = np.histogram_bin_edges(np.r_[clean, stamped], bins=25).tolist()
    ax.hist(clean, bins=bins, alpha=0.6, label="clean (held out)")
    if len(stamped):
        ax.hist(stamped, bins=bins, alpha=0.6, label="stamped with recovered trigger")
    ax.set_xlabel("anomaly score")
    ax.legend(fontsize=7)
    auroc = f" (AUROC {inputs['auroc']:.2f})" if "auroc" in inputs else ""
    ax.set_title(f"{plain(tool)}: anomaly scores{auroc}", fontsize=9)
    return _png(fig)


def localize_plot(loc: dict[str, Any], tool: str) -> str:
    success = loc["trigger_success"]
    fig = Figure(figsize=(5, 2.4))
    ax = fig.subplots()
    labels = ["no ablation", f"top {loc['k']} units zeroed", f"{loc['k']} random units zeroed"]
    ax.barh(labels, [success["none"], success["top"], success["random"]], color=["#4c72b0", "#c44e52", "#8c8c8c"])
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel(f"recovered trigger's success (to class {loc['target']})")
    ax.set_title(f"{plain(tool)}: ablating the units it ranks first", fontsize=9)
    return _png(fig)


PLOTTERS: dict[str, Callable[..., str]] = {"layers": layers_plot, "predictions": predictions_plot, "blackbox": blackbox_plot,
            "trigger": trigger_plot, "bars": bars_plot, "histogram": histogram_plot,
            "localize": localize_plot}


@lru_cache(maxsize=64)
def _render(kind: str, payload: str) -> str:
    """Draw once per distinct input: the report is rewritten after every stage."""
    args = json.loads(payload)
    return PLOTTERS[kind](*args)


def _plot(kind: str, *args: Any) -> str:
    return _render(kind, json.dumps(args, sort_keys=True))


def all_plots(report: dict[str, Any]) -> dict[str, str]:
    """Every plot the report's numbers allow, by id (the ids findings refer to)."""
    if report.get("model", {}).get("family", "vision") != "vision":
        return {}  # a language model's evidence is text, shown in its findings
    stages = report.get("stages", {})
    data = {n: s["data"] for n, s in stages.items() if s.get("status") == "done"}
    plots: dict[str, str] = {}
    if "card" in data:
        plots["layers"] = _plot("layers", data["card"])
        plots["predictions"] = _plot("predictions", data["card"])
    if "blackbox" in data:
        plots["blackbox"] = _plot("blackbox", data["blackbox"])
    for name, d in data.items():
        tool = name.split(":", 1)[-1]
        evidence = d.get("evidence") or {}
        if name.startswith("tool:") and d.get("trigger") and "mask_l1" in evidence:
            plots["nc_trigger"] = _plot("trigger", d, tool)
            plots["nc_mask_norms"] = _plot("bars", evidence["mask_l1"], d["target"],
                                           f"{tool}: smallest trigger per class", "mask L1")
        if name.startswith("tool:") and "row_norms" in evidence:
            plots["row_norms"] = _plot("bars", evidence["row_norms"], d["target"],
                                       f"{tool}: output-layer row norms", "L2 norm")
        if name.startswith("tool:") and d.get("inputs"):
            tool = name.split(":", 1)[1]
            plots[f"hist:{tool}"] = _plot("histogram", d["inputs"], tool)
        if name.startswith("tool:") and localize_measured(d.get("localize") or {}):
            tool = name.split(":", 1)[1]
            plots[f"localize:{tool}"] = _plot("localize", d["localize"], tool)
    return plots
