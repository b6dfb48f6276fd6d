"""Build the grokking suite of a preset: per seed the organism and its two controls, in a
process pool (one single-threaded training per worker), with a manifest the tracks read."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from deepaudit.zoo.build import BuildResult
from deepaudit.zoo.grokking.build import build_grok_organism
from deepaudit.zoo.grokking.spec import grok_specs


def grok_suite_name(preset: str) -> str:
    """The suite name under which the tracks' results are stored."""
    return f"grok-{preset}"


def build_grok_suite(preset: str, seeds: tuple[int, ...], out: Path, store: Path, jobs: int = 1,
                     progress: Callable[[BuildResult], None] | None = None) -> dict:
    """Build (or reuse) the suite's organisms into ``out``; write and return the manifest."""
    specs = grok_specs(preset, seeds)
    out, store = Path(out), Path(store)
    executor = ProcessPoolExecutor(jobs) if jobs > 1 else None
    try:
        mapped = (executor.map if executor else map)(build_grok_organism, specs, [out] * len(specs),
                                                     [store] * len(specs))
        results = []
        for result in mapped:
            results.append(result)
            if progress:
                progress(result)
    finally:
        if executor:
            executor.shutdown(cancel_futures=True)
    manifest = {"suite": grok_suite_name(preset), "preset": preset, "seeds": list(seeds),
                "organisms": [r.organism_id for r in results],
                "roles": {r.organism_id: s.role for s, r in zip(specs, results)}}
    path = out / "suites" / f"{grok_suite_name(preset)}-{'-'.join(map(str, seeds))}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=1))
    return manifest
