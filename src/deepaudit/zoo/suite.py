"""Suites are data: TOML files in each family's ``suites`` folder (``zoo/<family>/suites``), or
a TOML file anywhere, naming its ``family``; the family reads the rest into specs. A suite seed
derives every organism's seed, so the same suite from another seed is a held-out split.
``build_suite`` builds (or reuses) every organism on an executor, one dependency level at a
time, and writes the suite's manifest."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from deepaudit.errors import DeepAuditError
from deepaudit.executors import Executor, LocalExecutor
from deepaudit.zoo.family import FAMILIES, Family, Spec, family
from deepaudit.zoo.folder import BuildResult


class SuiteError(DeepAuditError):
    """An unknown suite, or a suite file that cannot be read."""


class BuildError(DeepAuditError):
    """An organism's build failed in a way its family did not foresee (a full disk, a library's error)."""


@dataclass(frozen=True)
class Suite:
    """A suite's name, its family, a description and its parsed TOML."""

    name: str
    family: Family
    description: str
    data: dict[str, Any]

    def specs(self, seed: int = 0) -> list[Spec]:
        """Every organism of the suite for ``seed`` (a suite file that does not fit its family's
        format is an error naming the suite)."""
        try:
            return self.family.specs(self.data, seed)
        except (KeyError, TypeError, ValueError) as exc:
            missing = f"lacks the key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise SuiteError(f"suite {self.name!r} ({self.family.name}): {missing}") from exc

    def planned(self, seed: int = 0) -> int:
        """How many organisms a build of ``seed`` starts with (spares, drawn only to replace
        organisms that fail their check, are not counted)."""
        return sum(self.family.wanted(s, []) for s in self.specs(seed))


def _builtin() -> dict[str, tuple[str, Any]]:
    """Suite name -> (family, resource) for the TOML files of every registered family."""
    found: dict[str, tuple[str, Any]] = {}
    for name in FAMILIES:
        package = type(family(name)).__module__.rpartition(".")[0]
        try:
            folder = resources.files(package).joinpath("suites")
        except (ModuleNotFoundError, TypeError, ValueError):  # a family defined outside a package
            continue
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.name.endswith(".toml"):
                suite = entry.name.removesuffix(".toml")
                if suite in found:
                    raise SuiteError(f"two families have a suite named {suite!r}: {found[suite][0]} and {name}")
                found[suite] = (name, entry)
    return found


def available_suites() -> list[str]:
    """Names of the built-in suites of every family."""
    return sorted(_builtin())


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, or a suite TOML file by path (it names its ``family``)."""
    path = Path(name_or_path)
    builtin = _builtin()
    if path.suffix == ".toml" and path.is_file():
        text, default_family = path.read_text(), None
    elif name_or_path in builtin:
        default_family, entry = builtin[name_or_path]
        text = entry.read_text()
    else:
        raise SuiteError(f"unknown suite {name_or_path!r}; built-in suites: {sorted(builtin)} "
                         "(or give the path of a .toml file)")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"suite {name_or_path!r} is not valid TOML: {exc}") from exc
    owner = data.get("family", default_family)
    if owner is None:
        raise SuiteError(f"suite file {path} must name its family (family = one of {list(FAMILIES)})")
    return Suite(data.get("name", path.stem), family(owner), data.get("description", ""), data)


def build_spec(family_name: str, spec: Spec, out: Path, store: Path) -> BuildResult:
    """Build one spec (an executor job: the family travels by name)."""
    return family(family_name).build(spec, out, store)


def build_suite(name: str, seed: int = 0, out: Path | None = None, store: Path | None = None, jobs: int = 1,
                progress: Callable[[BuildResult], None] | None = None, executor: Executor | None = None,
                build: bool = True) -> dict[str, Any]:
    """Build (or reuse from the cache) every organism of a suite; write and return its
    manifest: the organism ids that passed their checks, and the dropped ones with reasons.
    ``build=False`` only looks (unbuilt organisms are listed as missing, nothing is trained)."""
    from deepaudit.paths import default_store_path, default_zoo_dir

    out = Path(out) if out else default_zoo_dir()
    store = Path(store) if store else default_store_path()
    suite = load_suite(name)
    fam = suite.family
    specs = suite.specs(seed)
    results: dict[str, BuildResult] = {}
    executor = executor or LocalExecutor(jobs)
    for level in sorted({fam.level(s) for s in specs}):
        earlier = [(s, results[s.digest()]) for s in specs if s.digest() in results]
        batch = [s for s in specs if fam.level(s) == level and fam.wanted(s, earlier)]
        if not build:
            results.update({s.digest(): fam.lookup(s, out) for s in batch})
            continue
        with closing(executor.run(build_spec, [(fam.name, s, out, store) for s in batch])) as outcomes:
            for i, result, error in outcomes:
                if isinstance(error, DeepAuditError):
                    raise error
                if error is not None:  # a worker's unforeseen failure: named, not a traceback
                    raise BuildError(f"building organism {batch[i].digest()} of suite {suite.name!r} (seed {seed}) "
                                     f"failed: {type(error).__name__}: {error}. The organisms already built are "
                                     "cached: run the build again to resume") from error
                results[batch[i].digest()] = result
                if progress:
                    progress(result)
    ordered = [(s, results[s.digest()]) for s in specs if s.digest() in results]  # spares not wanted are left out
    manifest = {
        "suite": suite.name, "family": fam.name, "seed": seed, "description": suite.description,
        "organisms": [r.organism_id for _, r in ordered if r.status in ("built", "cached")],
        "dropped": [{"organism_id": r.organism_id, "spec": s.to_json(), "reason": r.reason}
                    for s, r in ordered if r.status == "dropped"],
        "missing": [r.organism_id for _, r in ordered if r.status == "missing"],
    }
    if build:
        path = out / "suites" / f"{suite.name}-{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest, indent=1))
    return manifest
