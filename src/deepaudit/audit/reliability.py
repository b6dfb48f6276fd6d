"""Each tool's measured reliability on the auditing game's benchmark, read from the results
store's leaderboard of the model's family (``deepaudit game run --suite standard`` or ``quick``
for classifiers, ``--suite lm`` for language models; never another family's suite). Without
results the answer is "not measured": the audit never invents a score."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from deepaudit.errors import DeepAuditError

SUITES = ("standard", "quick")
SEEDS = (0, 1, 2)  # the game seeds looked at, in order (the first that measured a tool is used)


def not_measured(suites: tuple[str, ...]) -> dict[str, str]:
    return {"status": "not measured",
            "how": f"run `deepaudit game run --suite {suites[-1]}`" + (f" (or --suite {suites[0]})" if len(suites) > 1
                                                                      else "") + " to measure it"}


def _score(track: dict[str, Any] | None) -> dict[str, float] | None:
    if not track:
        return None
    return {k: round(float(track[k]), 4) for k in ("value", "ci_low", "ci_high", "n") if k in track}


def _boards(store_path: Path, seed: int, suites: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The leaderboards of ``suites`` (bootstrapping them takes a while on a big store), cached
    in the deepaudit home for as long as the store's files are unchanged."""
    from deepaudit.game.leaderboard import leaderboard
    from deepaudit.paths import atomic_write_text, home

    files = [p for p in (store_path, store_path.with_name(store_path.name + "-wal")) if p.is_file()]
    stamp = [[str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size] for p in files] + [seed, list(suites)]
    cache = home() / "cache" / f"leaderboards-{hashlib.sha256(str(store_path.resolve()).encode()).hexdigest()[:16]}.json"
    try:
        saved = json.loads(cache.read_text())
        if saved.get("stamp") == stamp:
            return saved["boards"]
    except (OSError, ValueError, AttributeError):  # none yet, or unreadable: computed again below
        pass
    boards = {}
    for suite in suites:
        try:
            boards[suite] = leaderboard(store_path, suite, seed)
        except (ValueError, sqlite3.Error, DeepAuditError):  # no results, or a store it cannot read: not measured
            continue
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache, json.dumps({"stamp": stamp, "boards": boards}))  # audits at once never read half of it
    return boards


def _current(row: dict[str, Any]) -> bool:
    """Whether a leaderboard row measured the tool as it is now (its version and parameters give
    the row's digest): an older version's scores are not this tool's."""
    from deepaudit.tools.registry import TOOLS

    name = row["tool"].split(" [")[0]
    return name in TOOLS and row.get("parameters") is not None and TOOLS.get(name).digest(row["parameters"]) == row["params"]


def _default(row: dict[str, Any]) -> bool:
    """Whether the row measured the tool with its default parameters (preferred when several did)."""
    from deepaudit.tools.registry import TOOLS

    name = row["tool"].split(" [")[0]
    return name in TOOLS and row.get("parameters") == TOOLS.get(name).params()


def measured_reliability(store_path: Path | None, tools: list[str], suites: tuple[str, ...] = SUITES,
                         seeds: tuple[int, ...] = SEEDS) -> dict[str, dict[str, Any]]:
    """Per tool: its scores on the first of ``suites`` (standard before quick) and ``seeds`` that
    measured it in the store; the entry names the suite and seed."""
    from deepaudit.paths import default_store_path

    store_path = Path(store_path) if store_path else default_store_path()
    found: dict[str, dict[str, Any]] = {}
    boards = [(seed, suite, board) for seed in seeds
              for suite, board in (_boards(store_path, seed, suites) if store_path.is_file() else {}).items()]
    for seed, suite, board in sorted(boards, key=lambda b: (suites.index(b[1]), b[0])):
        for row in sorted(board["rows"], key=lambda r: not _default(r)):
            name = row["tool"].split(" [")[0]
            if name in found or name not in tools or not _current(row):
                continue
            tracks = row["tracks"]
            detect = tracks.get("detect", {})
            found[name] = {
                "status": "measured", "suite": suite, "seed": seed, "organisms": row["organisms"],
                "budget": board["budget"], "detect_auroc": _score(detect.get("auroc")),
                "fpr95": _score(detect.get("fpr95")), "target_top1": _score(tracks.get("target", {}).get("top1")),
                "trigger_asr": _score(tracks.get("trigger", {}).get("asr")),
                "inputs_auroc": _score(tracks.get("inputs", {}).get("auroc")), "store": str(store_path)}
    return {t: found.get(t, not_measured(suites)) for t in tools}
