"""Compare the cells of one suite in two results stores, cell by cell: every (organism, tool)'s
answer and scores. Either store may be a schema-1 store (deepaudit before the one-game runner:
its cells hold every track's scores and the organism's labels in one dict) or a schema-2 store
(a cell per track; labels apart); both are read as one dict of scores per (organism, tool).

    python benchmarks/compare_stores.py OLD.sqlite NEW.sqlite --suite quick [--seed 0]

Prints, per tool: cells equal, cells that differ (with the differing keys and both values),
keys only one side has, and cells only one side has. Exit status 1 if any value differs."""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

Cells = dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]]  # (organism, tool) -> (answer, scores)


def read(path: Path, suite: str, seed: int) -> Cells:
    """(organism, tool) -> (answer, scores with labels), whatever the store's schema."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    version = int(db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
    table = "cells_v1" if db.execute("SELECT 1 FROM sqlite_master WHERE name='cells_v1'").fetchone() else "cells"
    out: Cells = {}
    if version == 1 or table == "cells_v1":
        for oid, tool, answer, scores in db.execute(
                f"SELECT organism_id, tool, answer, scores FROM {table} WHERE suite=? AND seed=? AND status='done'",
                (suite, seed)):
            answer = json.loads(answer or "{}")
            if "skipped" not in answer:
                out[(oid, tool)] = (answer, json.loads(scores or "{}"))
        return out
    merged: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = defaultdict(lambda: ({}, {}))
    for oid, tool, answer, scores, labels in db.execute(
            "SELECT organism_id, tool, answer, scores, labels FROM cells WHERE suite=? AND seed=? AND status='done'",
            (suite, seed)):
        held_answer, held_scores = merged[(oid, tool)]
        held_answer.update(json.loads(answer or "{}"))
        held_scores.update({**json.loads(labels or "{}"), **json.loads(scores or "{}")})
    return dict(merged)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and (
            a == b or (math.isnan(a) and math.isnan(b)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def compare(old: Cells, new: Cells) -> dict[str, dict[str, Any]]:
    """Per tool: equal cells, differing keys (with both values), keys on one side, missing cells."""
    report: dict[str, dict[str, Any]] = defaultdict(lambda: {"equal": 0, "differ": [], "only_old_keys": set(),
                                                             "only_new_keys": set(), "only_old": 0, "only_new": 0})
    for key in sorted(set(old) | set(new)):
        tool = report[key[1]]
        if key not in new:
            tool["only_old"] += 1
            continue
        if key not in old:
            tool["only_new"] += 1
            continue
        (a_old, s_old), (a_new, s_new) = old[key], new[key]
        differ = {}
        for part, before, after in (("answer", a_old, a_new), ("scores", s_old, s_new)):
            tool["only_old_keys"] |= {f"{part}.{k}" for k in set(before) - set(after)}
            tool["only_new_keys"] |= {f"{part}.{k}" for k in set(after) - set(before)}
            differ.update({f"{part}.{k}": (before[k], after[k]) for k in set(before) & set(after)
                           if not same(before[k], after[k])})
        if differ:
            tool["differ"].append((key[0], differ))
        else:
            tool["equal"] += 1
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=3, help="differing cells printed per tool")
    args = parser.parse_args(argv)
    report = compare(read(args.old, args.suite, args.seed), read(args.new, args.suite, args.seed))
    changed = False
    for tool, r in sorted(report.items()):
        print(f"{tool}: {r['equal']} equal, {len(r['differ'])} differ, {r['only_old']} only in old, "
              f"{r['only_new']} only in new")
        if r["only_old_keys"] or r["only_new_keys"]:
            print(f"    keys only in old: {sorted(r['only_old_keys'])}; only in new: {sorted(r['only_new_keys'])}")
        for organism, differ in r["differ"][: args.show]:
            shown = {k: v for k, v in sorted(differ.items()) if not isinstance(v[0], (list, dict))}
            print(f"    {organism}: {json.dumps(shown)[:400]}")
        changed |= bool(r["differ"])
    print(f"command: python benchmarks/compare_stores.py {args.old} {args.new} --suite {args.suite} --seed {args.seed}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
