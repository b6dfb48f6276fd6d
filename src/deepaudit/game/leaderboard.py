"""The leaderboard: a view of the store. Tools x tracks, each score with its bootstrap 95%
CI and its cost, optionally sliced by an organism property (implant, data set, ...)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.game.metrics import detect_scores, mean_with_ci
from deepaudit.game.removal import EDIT_COLUMNS, edit_columns, edit_tracks
from deepaudit.game.skyline import cross_fitted
from deepaudit.game.store import read_cells
from deepaudit.tools import TOOLS, roles

SLICES = ("implant", "dataset", "arch", "mapping", "evasive")
BASELINES = {"random"}


def tool_kind(name: str) -> str:
    if name in TOOLS and "skyline" in roles(name):
        return "skyline"
    return "baseline" if name in BASELINES else "tool"


def _track_scores(cells: list[dict], seed: int) -> dict[str, Any]:
    planted = [c for c in cells if c["scores"]["planted"]]
    out: dict[str, Any] = {}
    probs = [c["scores"].get("p_planted") for c in cells]
    if all(p is not None for p in probs) and cells:
        out["detect"] = detect_scores(np.array([c["scores"]["planted"] for c in cells]), np.array(probs), seed)
    for track, key in (("target", "target_correct"), ("trigger_asr", "trigger_asr"),
                       ("trigger_iou", "trigger_iou"), ("inputs", "inputs_auroc")):
        values = [float(c["scores"][key]) for c in planted if key in c["scores"]]
        if values:
            out[track] = mean_with_ci(np.array(values), seed)
    out.update(edit_tracks(cells, seed))
    return out


def leaderboard(store_path: Path, suite: str, seed: int = 0, by: str | None = None,
                budget: int | None = None) -> dict[str, Any]:
    """Scores per tool, computed from the store; ``by`` (one or more comma-separated organism
    properties, e.g. ``implant,dataset``) adds a row per slice value. Runs with different
    clean-data budgets are never mixed: ``budget`` picks one when the store holds several."""
    keys = [k.strip() for k in by.split(",")] if by else []
    bad = [k for k in keys if k not in SLICES]
    if bad:
        raise ValueError(f"cannot slice by {bad}; choose from {SLICES}")
    cells = read_cells(store_path, suite, seed, budget)
    by_tool: dict[str, list[dict]] = defaultdict(list)
    for cell in cells:
        by_tool[cell["tool"]].append(cell)
    rows = []
    for tool, tool_cells in sorted(by_tool.items()):
        if tool_cells[0]["answer"].get("features") is not None:
            predicted = cross_fitted(tool_cells)
            for cell in tool_cells:
                cell["scores"]["p_planted"] = predicted[cell["organism_id"]]
        ran = [c for c in tool_cells if "skipped" not in c["answer"]]  # cost: cells where the tool worked
        row = {"tool": tool, "kind": tool_kind(tool), "organisms": len(tool_cells),
               "budget": tool_cells[0]["budget"],
               "wall_s": float(np.mean([c["wall_s"] for c in ran] or [0.0])),
               "forward_passes": float(np.mean([c["forward_passes"] for c in ran] or [0.0])),
               "tracks": _track_scores(tool_cells, seed)}
        if keys:
            row["slices"] = {}
            slice_of = lambda c: ",".join(str(c["scores"][k]) for k in keys)  # noqa: E731
            for value in sorted({slice_of(c) for c in tool_cells if c["scores"]["planted"]}):
                positives = [c for c in tool_cells if c["scores"]["planted"] and slice_of(c) == value]
                # detection in a slice: its planted organisms against the clean ones that share
                # its non-implant properties (data set, architecture), or all clean ones
                negatives = [c for c in tool_cells if not c["scores"]["planted"] and all(
                    str(c["scores"][k]) == v for k, v in zip(keys, value.split(",")) if k in ("dataset", "arch"))]
                row["slices"][value] = _track_scores(positives + negatives, seed)
        rows.append(row)
    return {"schema": 1, "suite": suite, "seed": seed, "by": by, "organisms": len({c["organism_id"] for c in cells}),
            "rows": rows}


def _fmt(score: dict | None, ci: bool = True, sep: str = " ") -> str:
    if not score:
        return "-"
    if ci and np.isfinite(score.get("ci_low", np.nan)):
        return f"{score['value']:.2f}{sep}[{score['ci_low']:.2f}, {score['ci_high']:.2f}]"
    return f"{score['value']:.2f}"


COLUMNS = ("tool", "kind", "detect AUROC", "AUPR", "FPR@95", "log-loss", "target top-1", "trigger ASR",
           "mask IoU", "inputs AUROC", *EDIT_COLUMNS, "s/organism", "fwd/organism")


def table_rows(board: dict[str, Any], sep: str = " ") -> list[list[str]]:
    """Rows of display strings, one per tool (and per slice when the board is sliced);
    ``sep`` goes between a value and its CI."""
    lines = []
    for row in board["rows"]:
        parts = [(row["tool"], row["tracks"])]
        parts += [(f"  {board['by']}={k}", v) for k, v in row.get("slices", {}).items()]
        for i, (label, tracks) in enumerate(parts):
            detect = tracks.get("detect", {})
            inputs = tracks.get("inputs")
            lines.append([
                label, row["kind"] if i == 0 else "", _fmt(detect.get("auroc"), sep=sep),
                _fmt(detect.get("aupr"), False), _fmt(detect.get("fpr95"), False), _fmt(detect.get("logloss"), False),
                _fmt(tracks.get("target"), sep=sep), _fmt(tracks.get("trigger_asr"), sep=sep),
                _fmt(tracks.get("trigger_iou"), False),
                f"{inputs['value']:.2f} ± {inputs['std']:.2f}" if inputs else "-", *edit_columns(tracks, sep),
                f"{row['wall_s']:.2f}" if i == 0 else "", f"{row['forward_passes']:.0f}" if i == 0 else ""])
    return lines


def views(board: dict[str, Any], sep: str = " ") -> list[tuple[str, list[str], list[list[str]]]]:
    """The board as two tables (title, columns, rows), each narrow enough to read: the
    detection tracks, and the editing tracks (remove, localize). A tool appears in a table
    where it has a score, with its slice rows."""
    rows = table_rows(board, sep)
    cost = ("s/organism", "fwd/organism")
    out = []
    for title, columns in (("detection", [c for c in COLUMNS if c not in EDIT_COLUMNS]),
                           ("removal and localization", ["tool", "kind", *EDIT_COLUMNS, *cost])):
        idx = [COLUMNS.index(c) for c in columns]
        scored = [i for i in idx if COLUMNS[i] not in ("tool", "kind", *cost)]
        kept, keep = [], False
        for row in rows:
            if not row[0].startswith("  "):  # a tool's row decides for its slice rows
                keep = any(row[i] != "-" for i in scored)
            if keep:
                kept.append([row[i] for i in idx])
        if kept:
            out.append((title, columns, kept))
    return out


def to_markdown(board: dict[str, Any]) -> str:
    text = f"Suite `{board['suite']}` seed {board['seed']}, {board['organisms']} organisms, clean budget " \
           f"{board['rows'][0]['budget']} inputs. Scores: value [bootstrap 95% CI].\n"
    for title, columns, rows in views(board):
        lines = [f"\n**{title}**\n", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        text += "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"
    return text


def to_json(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=1)
