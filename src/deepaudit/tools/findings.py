"""A tool asks its subject for a shared finding (``shared(subject, "trigger")``): the registry
names the tool that provides it for the subject's family (Neural Cleanse's recovered trigger
for vision models, the trigger search's phrase for language models), which runs once per
organism; every later request reads the cached answer. A combination asks for another tool's
verdict the same way (``verdict_of(subject, "nc_rehead")``): computed once per organism and
parameters, and shared with that tool's own cell in the game (``verdict_key``)."""

from __future__ import annotations

import time
from typing import Any

import torch

from deepaudit.errors import DeepAuditError
from deepaudit.findings import Cost
from deepaudit.tools.base import Verdict
from deepaudit.tools.registry import ToolSpec, provider, tool_spec
from deepaudit.triggers import TextTrigger


class FindingError(DeepAuditError):
    """A shared finding could not be computed (its provider raised)."""


def _found(subject: Any, name: str, spec: ToolSpec, params: dict[str, Any], seed: int | None = None) -> Verdict:
    """The finding ``name``: ``spec``'s detect verdict (with ``params``; the organism's seed unless
    ``seed``), computed on the organism's own subject the first time, read back every later time."""
    findings = subject.findings
    if name in findings.failed:
        raise FindingError(findings.failed[name])
    if name not in findings.values:
        own = findings.subject_factory() if findings.subject_factory is not None else subject
        start, cpu, before = time.perf_counter(), time.process_time(), own.forward_passes
        try:
            with torch.enable_grad():  # the asking tool may run under no_grad; the provider may optimise
                value = spec.make(findings.seed if seed is None else seed, **params).audit(own)
        except Exception as exc:  # every later request gets the same error, not a second attempt
            findings.failed[name] = f"the shared finding {name!r} ({spec.name}) failed: {type(exc).__name__}: {exc}"
            raise FindingError(findings.failed[name]) from exc
        finally:
            findings.busy_s += time.perf_counter() - start
            findings.busy_cpu_s += time.process_time() - cpu
        wall, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        findings.put(name, value, Cost(wall, own.forward_passes - before if own is not subject else 0, cpu_s))
    findings.used.add(name)
    found: Verdict = findings.values[name]
    return found


def shared(subject: Any, name: str) -> Verdict:
    """The finding ``name`` of the subject's organism (a ``Verdict`` of its provider's detect role)."""
    return _found(subject, name, provider(name, subject.family), {})


def verdict_key(tool: str, params: dict[str, Any] | None = None) -> str:
    """The finding name of ``tool``'s verdict: ``verdict:TOOL`` with its default parameters, the
    parameters' digest appended otherwise (a verdict with other settings is another finding)."""
    spec = tool_spec(tool)
    chosen = spec.params(**(params or {}))
    return f"verdict:{tool}" if chosen == spec.params() else f"verdict:{tool}:{spec.digest(chosen)}"


def verdict_of(subject: Any, tool: str, seed: int, **params: Any) -> Verdict:
    """``tool``'s verdict on the subject's organism (with ``seed`` and ``params``), computed once
    per organism, seed and parameters; the shared finding itself where ``tool`` provides one with
    these settings (a trigger search is not run twice for its own cell and a combination)."""
    spec, own_seed = tool_spec(tool), seed == subject.findings.seed
    key = verdict_key(tool, params) + ("" if own_seed else f":seed={seed}")
    if (spec.provides is not None and own_seed and spec.params(**params) == spec.params()
            and provider(spec.provides, subject.family) is spec):
        return shared(subject, spec.provides)
    return _found(subject, key, spec, params, seed)


def suspect_phrase(subject: Any) -> TextTrigger:
    """The language model's recovered trigger phrase (the ``trigger`` finding)."""
    trigger = shared(subject, "trigger").trigger
    if not isinstance(trigger, TextTrigger):
        raise ValueError(f"the recovered trigger is not a phrase but {type(trigger).__name__}")
    return trigger
