"""Suites are data (TOML files beside this module): groups of grid cells, each a cartesian
product of data sets, architectures, implants, mappings and evasiveness, with replicates.
Every planted organism brings its clean twin. A suite seed derives every organism's seed,
so the same suite from another seed is a held-out split."""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from deepaudit.executors import Executor, LocalExecutor
from deepaudit.zoo.build import BuildResult, build_organism
from deepaudit.zoo.spec import OrganismSpec

GROUP_KEYS = {"datasets", "archs", "implants", "mappings", "evasive", "decoys", "replicates", "epochs"}


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    groups: tuple[dict, ...]


def available_suites(package: str = "deepaudit.zoo") -> list[str]:
    """Names of the built-in suites: the TOML files in ``package``'s ``suites`` folder."""
    folder = resources.files(package).joinpath("suites")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def read_suite_toml(name_or_path: str, package: str = "deepaudit.zoo") -> dict:
    """The parsed TOML of a built-in suite of ``package`` by name, or of a suite file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        return tomllib.loads(path.read_text())
    if name_or_path in available_suites(package):
        return tomllib.loads(resources.files(package).joinpath("suites", f"{name_or_path}.toml").read_text())
    raise ValueError(f"unknown suite {name_or_path!r}; built-in suites: {available_suites(package)} "
                     "(or give the path of a .toml file)")


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, or a suite TOML file by path."""
    data = read_suite_toml(name_or_path)
    for group in data.get("group", []):
        unknown = set(group) - GROUP_KEYS
        if unknown:
            raise ValueError(f"suite {data.get('name')!r}: unknown group keys {sorted(unknown)}")
    return Suite(data["name"], data.get("description", ""), tuple(data.get("group", [])))


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little") % 2**31


def suite_specs(suite: Suite, seed: int = 0) -> list[OrganismSpec]:
    """Every organism of the suite for this seed: planted ones, their twins, and decoys."""
    specs: list[OrganismSpec] = []
    for g, group in enumerate(suite.groups):
        decoys = group.get("decoys", ["none"])
        implants = ["none"] if decoys != ["none"] else group.get("implants", ["none"])
        grid = itertools.product(group["datasets"], group["archs"], implants, group.get("mappings", ["all_to_one"]),
                                 group.get("evasive", [False]), decoys, range(group.get("replicates", 1)))
        for dataset, arch, implant, mapping, evasive, decoy, rep in grid:
            spec = OrganismSpec(dataset, arch, implant, mapping if implant != "none" else "all_to_one",
                                evasive, decoy, _seed(seed, g, dataset, arch, implant, mapping, evasive, decoy, rep),
                                group.get("epochs"))
            specs.append(spec)
            if spec.planted:
                specs.append(spec.twin())
    return list(dict.fromkeys(specs))


def _level(spec: OrganismSpec) -> int:
    """Build order: plain clean models, then models fine-tuned from them, then trojans."""
    return 2 if spec.planted else int(spec.evasive or spec.decoy != "none")


def build_suite(name: str, seed: int = 0, out: Path | None = None, jobs: int = 1,
                progress: Callable[[BuildResult], None] | None = None, executor: Executor | None = None) -> dict:
    """Build (or reuse from the cache) every organism of a suite; write and return its
    manifest: the organism ids that passed their checks, and the dropped ones with reasons.
    Builds run on ``executor`` (default: ``jobs`` local processes), one dependency level at a time."""
    from deepaudit.paths import default_zoo_dir

    out = Path(out) if out else default_zoo_dir()
    suite = load_suite(name)
    specs = suite_specs(suite, seed)
    results: dict[OrganismSpec, BuildResult] = {}
    levels = sorted({_level(s) for s in specs})
    executor = executor or LocalExecutor(jobs)
    for level in levels:
        batch = [s for s in specs if _level(s) == level]
        with closing(executor.run(build_organism, [(s, out) for s in batch])) as outcomes:
            for i, result, error in outcomes:
                if error is not None:
                    raise error
                results[batch[i]] = result
                if progress:
                    progress(result)
    manifest = {
        "suite": suite.name, "seed": seed, "description": suite.description,
        "organisms": [r.organism_id for s in specs if (r := results[s]).status != "dropped"],
        "dropped": [{"organism_id": r.organism_id, "spec": s.to_json(), "reason": r.reason}
                    for s in specs if (r := results[s]).status == "dropped"],
    }
    manifest_path = out / "suites" / f"{suite.name}-{seed}.json"
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


def spec_count(name: str, seed: int = 0) -> int:
    return len(suite_specs(load_suite(name), seed))
