"""The one registry of tools. A tool is declared once, next to its class, with
``@register_tool``: its roles, the organism families it applies to, its kind (tool, baseline,
skyline), what it needs, the shared finding it provides, and how the audit sizes it to a time
budget. Everything else (the game, the audit, the command line) reads these tags; no other
list of tool names exists. One class may be registered under several names with preset
parameters (variants)."""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from deepaudit.registry import Registry, RegistryError
from deepaudit.tools.base import ROLES
from deepaudit.tools.sizing import Allowance

KINDS = ("tool", "baseline", "skyline")
# what a tool may need: continuous inputs it can stamp or optimise, labels on the trusted data,
# the base model a language model was fine-tuned from, a recovered trigger (a shared finding)
NEEDS = ("continuous_inputs", "labels", "base_model", "trigger")
FINDINGS = ("trigger",)

Sizing = Callable[[Allowance], dict[str, Any]]
C = TypeVar("C", bound=type)


@dataclass(frozen=True)
class ToolSpec:
    """A registered tool: its class, preset parameters and tags."""

    name: str
    cls: type
    roles: tuple[str, ...]
    families: tuple[str, ...]
    kind: str = "tool"
    needs: tuple[str, ...] = ()
    provides: str | None = None
    preset: Mapping[str, Any] = field(default_factory=dict)
    version: int = 1
    audit_share: float = 0.05
    sizing: Sizing | None = None

    @property
    def summary(self) -> str:
        """The first sentence of the docstring of the tool's module (where its paper is named)."""
        doc = " ".join((sys.modules[self.cls.__module__].__doc__ or self.cls.__doc__ or "").split())
        end = doc.find(". ")
        return doc if end < 0 else doc[: end + 1]

    def params(self, **overrides: Any) -> dict[str, Any]:
        """Every constructor parameter with its value (preset, then overrides, else the default),
        the seed aside: what defines the tool's answers, and what its cells are keyed by."""
        known = {name: p.default for name, p in inspect.signature(self.cls).parameters.items()
                 if name != "seed" and not name.startswith("_") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise RegistryError(f"tool {self.name!r} has no parameters {unknown}; it takes {sorted(known)}")
        for name, value in overrides.items():
            if not _same_kind(value, known[name]):
                raise RegistryError(f"tool {self.name!r}: parameter {name!r} must be of type {type(known[name]).__name__}, "
                                    f"like its default {known[name]!r}, not {value!r}")
        # an int given for a float is that float: the same setting gets the same key (digest)
        given = {name: float(value) if isinstance(known[name], float) else value for name, value in overrides.items()}
        return {**known, **self.preset, **given}

    def digest(self, params: Mapping[str, Any]) -> str:
        """12 hex digits naming (tool, version, parameters): a changed default is a new key."""
        text = json.dumps({"tool": self.name, "version": self.version, "params": params}, sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def make(self, seed: int = 0, **overrides: Any) -> Any:
        """An instance with the preset and ``overrides`` (and the seed, where the class takes one)."""
        kwargs = {**self.preset, **overrides}
        self.params(**overrides)  # refuse unknown parameters with the tool's name
        if "seed" in inspect.signature(self.cls).parameters:
            kwargs["seed"] = seed
        return self.cls(**kwargs)


def _same_kind(value: Any, default: Any) -> bool:
    """Whether ``value`` may stand for a parameter whose default is ``default`` (an int for a float
    too; a default of None or of another type takes anything)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) == isinstance(default, bool) or default is None
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, str):
        return isinstance(value, str)
    return True


TOOLS: Registry[ToolSpec] = Registry("tool", ("deepaudit.tools",))


def register_tool(name: str, *, roles: tuple[str, ...], families: tuple[str, ...], kind: str = "tool",
                  needs: tuple[str, ...] = (), provides: str | None = None, preset: Mapping[str, Any] | None = None,
                  version: int = 1, audit_share: float = 0.05, sizing: Sizing | None = None) -> Callable[[C], C]:
    """Class decorator: register the class as tool ``name``. Checked here, like scikit-learn's
    ``check_estimator``: known roles, families, kind and needs, and the role methods present."""

    def decorate(cls: C) -> C:
        bad = ([f"role {r!r}" for r in roles if r not in ROLES] + [f"kind {kind!r}"] * (kind not in KINDS)
               + [f"need {n!r}" for n in needs if n not in NEEDS]
               + [f"finding {provides!r}"] * (provides is not None and provides not in FINDINGS))
        if bad or not roles or not families:
            raise RegistryError(f"tool {name!r}: unknown {', '.join(bad) or 'roles or families (none given)'}")
        missing = [f"{role}: {method}" for role in roles for method in _methods(ROLES[role]) if not hasattr(cls, method)]
        if missing:
            raise RegistryError(f"tool {name!r} ({cls.__qualname__}) lacks the methods of its roles: {missing}")
        takes = set(inspect.signature(cls).parameters)
        if unknown := sorted(set(preset or {}) - takes):
            raise RegistryError(f"tool {name!r}: its preset sets {unknown}, which {cls.__qualname__} does not take")
        if provides is not None and "detect" not in roles:
            raise RegistryError(f"tool {name!r} provides {provides!r} through its detect role, but has none")
        TOOLS.add(name, ToolSpec(name, cls, tuple(roles), tuple(families), kind, tuple(needs), provides,
                                 dict(preset or {}), version, audit_share, sizing))
        return cls

    return decorate


def _methods(protocol: type) -> list[str]:
    return [m for m in vars(protocol) if not m.startswith("_") and callable(getattr(protocol, m))]


def tool_spec(name: str) -> ToolSpec:
    return TOOLS.get(name)


def tool_specs(family: str | None = None, role: str | None = None) -> list[ToolSpec]:
    """Registered tools, by name, filtered by family and role."""
    return [s for s in TOOLS.values() if (family is None or family in s.families) and (role is None or role in s.roles)]


def make_tool(name: str, seed: int = 0, **params: Any) -> Any:
    """Instantiate a registered tool."""
    return tool_spec(name).make(seed, **params)


def provider(finding: str, family: str) -> ToolSpec:
    """The tool that computes a shared finding for a family's organisms."""
    found = [s for s in TOOLS.values() if s.provides == finding and family in s.families]
    if len(found) != 1:
        raise RegistryError(f"{len(found)} tools provide {finding!r} for the {family} family "
                            f"({[s.name for s in found]}); exactly one must")
    return found[0]
