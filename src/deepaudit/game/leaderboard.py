"""The leaderboard of any suite: a view of the store. A row per tool (per parameter digest, so a
changed tool is never averaged with its old self), each track's metrics aggregated over the
organisms by the track itself, the tool's cost (its own seconds and forward passes per organism,
and the seconds of the shared findings it used), and optionally a row per slice of organisms
(``by`` family labels, e.g. ``implant,dataset``). Every metric has one JSON shape:
``{"value", "ci_low", "ci_high", "n"}``. The views group the tracks' columns into tables."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.game.store import Store, read_cells
from deepaudit.game.tracks.base import TRACKS, Column, Track, derived_cells
from deepaudit.metrics import Metric, mean_with_ci
from deepaudit.registry import RegistryError
from deepaudit.tools.registry import TOOLS
from deepaudit.zoo import family

SCHEMA = 2
COST = (Column("s/organism", "wall_s"), Column("CPU s/organism", "cpu_s"), Column("shared s", "shared_wall_s"),
        Column("fwd/organism", "forward_passes"))


def _kind(tool: str) -> str:
    return TOOLS.get(tool).kind if tool in TOOLS else "tool"


def _cost(cells: Sequence[dict[str, Any]], seed: int) -> dict[str, Metric]:
    """Per organism once (its track cells share the cost): own seconds (wall clock and CPU) and
    forward passes, and those of the shared findings the tool used."""
    once = list({c["organism_id"]: c for c in cells}.values())

    def shared(c: dict[str, Any], key: str) -> float:
        return float(sum(f.get(key, 0.0) for f in (c["shared"] or {}).values()))

    return {"wall_s": mean_with_ci([c["wall_s"] or 0.0 for c in once], seed),
            "forward_passes": mean_with_ci([float(c["forward_passes"] or 0) for c in once], seed),
            "cpu_s": mean_with_ci([float(c.get("cpu_s") or 0.0) for c in once], seed),
            "shared_cpu_s": mean_with_ci([shared(c, "cpu_s") for c in once], seed),
            "shared_wall_s": mean_with_ci([shared(c, "wall_s") for c in once], seed),
            "shared_forward_passes": mean_with_ci([shared(c, "forward_passes") for c in once], seed)}


def _tracks(cells: Sequence[dict[str, Any]], seed: int) -> dict[str, dict[str, Metric]]:
    by_track: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for cell in cells:
        by_track[cell["track"]].append(cell)
    return {name: TRACKS.get(name).aggregate(track_cells, seed) for name, track_cells in sorted(by_track.items())}


def slice_cells(cells: Sequence[dict[str, Any]], keys: list[str], context: tuple[str, ...]
                ) -> dict[str, list[dict[str, Any]]]:
    """Per slice value (the ``keys`` labels joined by commas): the slice's planted organisms and
    the clean organisms that share its ``context`` labels (data set and architecture for vision);
    in a suite with nothing planted (training runs), simply the organisms of each value."""
    value_of = lambda c: ",".join(str(c["labels"].get(k)) for k in keys)  # noqa: E731
    any_planted = any(c["labels"]["planted"] for c in cells)
    out = {}
    for value in sorted({value_of(c) for c in cells if c["labels"]["planted"] or not any_planted}):
        wanted = dict(zip(keys, value.split(",")))
        out[value] = [c for c in cells if (value_of(c) == value and (c["labels"]["planted"] or not any_planted)) or (
            not c["labels"]["planted"] and any_planted
            and all(str(c["labels"].get(k)) == v for k, v in wanted.items() if k in context))]
    return out


def leaderboard(store_path: Path, suite: str, seed: int = 0, by: str | None = None,
                budget: int | None = None) -> dict[str, Any]:
    """Scores per tool, computed from the store (see the module docstring). Runs with different
    clean-data budgets are never mixed: ``budget`` picks one when the store holds several."""
    cells = read_cells(store_path, suite, seed, budget)
    cells += derived_cells(cells)
    fam = family(cells[0]["labels"]["family"])
    store = Store(store_path)
    try:
        parameters = {(c["tool"], c["params"]): store.params(c["tool"], c["params"]) for c in cells}
    finally:
        store.close()
    keys = [k.strip() for k in by.split(",")] if by else []
    bad = [k for k in keys if k not in fam.slices]
    if bad:
        raise RegistryError(f"cannot slice {fam.name} organisms by {bad}; choose from {list(fam.slices)}")
    by_tool: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for cell in cells:
        by_tool[(cell["tool"], cell["params"])].append(cell)
    for (_, _), tool_cells in by_tool.items():  # scores that need all of a tool's organisms, before slicing
        for name in {c["track"] for c in tool_cells}:
            TRACKS.get(name).prepare([c for c in tool_cells if c["track"] == name], seed)
    several = {tool for tool, _ in by_tool if sum(t == tool for t, _ in by_tool) > 1}
    rows = []
    for (tool, params), tool_cells in sorted(by_tool.items()):
        row: dict[str, Any] = {"tool": tool if tool not in several else f"{tool} [{params}]", "kind": _kind(tool),
                               "params": params, "parameters": parameters[(tool, params)],
                               "organisms": len({c["organism_id"] for c in tool_cells}),
                               "cost": _cost(tool_cells, seed), "tracks": _tracks(tool_cells, seed)}
        if keys:
            sliced = slice_cells(tool_cells, keys, fam.context)
            row["slices"] = {value: _tracks(chosen, seed) for value, chosen in sliced.items()}
        rows.append(row)
    for name in sorted({c["track"] for c in cells}):
        track_cells = [c for c in cells if c["track"] == name]
        for label, metrics in TRACKS.get(name).references(track_cells, seed).items():
            rows.append({"tool": label, "kind": "reference", "params": "", "parameters": None, "organisms":
                         len({c["organism_id"] for c in track_cells}), "cost": {}, "tracks": {name: metrics}})
    return {"schema": SCHEMA, "suite": suite, "family": fam.name, "seed": seed, "budget": cells[0]["budget"],
            "by": by, "organisms": len({c["organism_id"] for c in cells}), "rows": rows}


def fmt(metric: Metric | None, column: Column, sep: str = " ") -> str:
    """A metric for display: value, with its CI when the column asks for it and one exists."""
    if not metric:
        return "-"
    value = metric["value"] * column.scale
    if column.ci and metric.get("n", 0) > 1 and np.isfinite(metric.get("ci_low", np.nan)):
        return f"{value:.2f}{sep}[{metric['ci_low'] * column.scale:.2f}, {metric['ci_high'] * column.scale:.2f}]"
    return f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"


def _table_tracks(board: dict[str, Any]) -> dict[str, list[Track]]:
    """Table title -> the tracks with scores on this board, in track order."""
    present = {name for row in board["rows"] for name in row["tracks"]}
    tables: dict[str, list[Track]] = defaultdict(list)
    for track in sorted((TRACKS.get(name) for name in present), key=lambda t: t.order):
        tables[track.table].append(track)
    return tables


def views(board: dict[str, Any], sep: str = " ") -> list[tuple[str, list[str], list[list[str]]]]:
    """The board as tables (title, header, rows), one per group of tracks; a tool appears in a
    table where it has a score, with its slice rows beneath."""
    out = []
    for title, tracks in _table_tracks(board).items():
        columns: list[tuple[Track, Column]] = []
        for track in tracks:
            seen: dict[str, Metric] = {}
            for row in board["rows"]:
                seen.update(row["tracks"].get(track.name, {}))
            columns += [(track, c) for c in track.shown(seen) if c.metric in seen]
        header = ["tool", "kind", *[c.header for _, c in columns], *[c.header for c in COST]]
        lines = []
        for row in board["rows"]:
            if not any(t.name in row["tracks"] for t in tracks):
                continue
            parts = [(row["tool"], row["tracks"], row["kind"], row["cost"])]
            parts += [(f"  {board['by']}={value}", tracks_, "", {}) for value, tracks_ in row.get("slices", {}).items()]
            for label, scored, kind, cost in parts:
                lines.append([label, kind, *[fmt(scored.get(t.name, {}).get(c.metric), c, sep) for t, c in columns],
                              *_cost_cells(cost)])
        out.append((title, header, lines))
    return out


def _cost_cells(cost: dict[str, Metric]) -> list[str]:
    if not cost:
        return [""] * len(COST)
    own, shared = cost["wall_s"]["value"], cost["shared_wall_s"]["value"]
    cpu = cost["cpu_s"]["value"] + cost["shared_cpu_s"]["value"]
    passes = cost["forward_passes"]["value"] + cost["shared_forward_passes"]["value"]
    return [f"{own + shared:.2f}", f"{cpu:.2f}", f"{shared:.2f}", f"{passes:.0f}"]


def to_markdown(board: dict[str, Any]) -> str:
    count = board["organisms"]
    text = (f"Suite `{board['suite']}` ({board['family']}) seed {board['seed']}, "
            f"{count} organism{'' if count == 1 else 's'}, trusted budget {board['budget']}. "
            "Scores: value [bootstrap 95% CI].\n")
    for title, header, rows in views(board):
        lines = [f"\n**{title}**\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        text += "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"
    return text


def to_json(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=1)
