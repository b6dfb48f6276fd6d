"""Hook-free activation capture for small models: trace the model once with torch.fx, keeping
the named modules as leaves, into a GraphModule that returns ``(model output, {name: output of
that module})``. On models whose forward pass takes tens of microseconds, one Python hook call
per captured module costs as much as the forward pass itself; the traced module makes no
Python call per captured module. Same names and the same tensors as ``deepaudit.internals.capture``.

The trace runs the model's Python code once, so it holds for models whose forward pass does
the same thing on every call (the zoo's architectures); fx refuses data-dependent control
flow with an error, raised here as ``TraceError``. The traced module holds the model's
submodules and parameters themselves (not copies), so weight updates are seen, but a
submodule replaced after the first call is not; it is cached per model object, names,
``detach`` and training mode, and dropped with the model. Hooks on the captured (leaf) modules
run as usual, and so do forward pre-hooks on the model itself (an audited subject's cost meter
is one), which the traced call runs before the graph as ``model(...)`` would; other hooks the
graph would skip (forward hooks on the model, hooks on a module traced through) make the call a
``TraceError``."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.nn.modules import module as module_hooks

from deepaudit.errors import DeepAuditError
from deepaudit.internals.capture import ActivationCache, _resolve
from deepaudit.models import ARCHITECTURES

_GLOBAL_HOOKS = {name: getattr(module_hooks, name) for name in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                                                 "_global_backward_hooks", "_global_backward_pre_hooks")}


class TraceError(DeepAuditError):
    """torch.fx cannot trace the model for capture, or the trace would skip hooks on the model."""


def _hook_dicts(module: nn.Module) -> tuple[dict, ...]:
    """The module's own hook registries (the dicts ``register_*_hook`` adds to)."""
    return module._forward_hooks, module._forward_pre_hooks, module._backward_hooks, module._backward_pre_hooks


class _Tracer(fx.Tracer):
    """Keeps each named module without named submodules as a leaf, traces through the others,
    and records the graph node of every call of a named module."""

    def __init__(self, wanted: dict[nn.Module, list[str]], containers: set[nn.Module]):
        super().__init__()
        self.wanted, self.containers = wanted, containers
        self.calls: dict[str, list[fx.Node]] = {}
        self.inlined: list[nn.Module] = []

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if m in self.containers:
            return False
        return m in self.wanted or super().is_leaf_module(m, qualname)

    def call_module(self, m: nn.Module, forward, args, kwargs) -> Any:
        if not self.is_leaf_module(m, ""):
            self.inlined.append(m)
        out = super().call_module(m, forward, args, kwargs)
        for name in self.wanted.get(m, ()):
            if not isinstance(out, fx.Proxy):
                raise TraceError(f"module {name!r} returns {type(out).__name__}, not a tensor; "
                                 f"capture it with deepaudit.internals.capture")
            self.calls.setdefault(name, []).append(out.node)
        return out


class TracedCapture:
    """``model(*args)`` as a traced graph that also returns the outputs of the named modules.
    Call it like the model; it returns ``(output, ActivationCache)``."""

    def __init__(self, model: nn.Module, names: Sequence[str], detach: bool = True):
        modules = _resolve(model, names)
        wanted: dict[nn.Module, list[str]] = {}
        for name, module in modules.items():
            wanted.setdefault(module, []).append(name)
        containers = {m for name, m in model.named_modules(remove_duplicate=False) if name
                      and any(other.startswith(name + ".") for other in modules)}
        tracer = _Tracer(wanted, containers)
        try:
            graph = tracer.trace(model)
        except TraceError:
            raise
        except Exception as error:  # fx raises many kinds on code it cannot trace symbolically
            raise TraceError(f"torch.fx cannot trace {type(model).__name__} ({type(error).__name__}: {error}); "
                             f"capture its activations with deepaudit.internals.capture (forward hooks)") from error
        output = next(node for node in graph.nodes if node.op == "output")
        with graph.inserting_before(output):
            acts = {}
            for name, calls in tracer.calls.items():  # in order of first call, as hooks fill the cache
                acts[name] = calls[0] if len(calls) == 1 else graph.call_function(torch.cat, (calls,))
        output.args = ((output.args[0], acts),)
        self.module = fx.GraphModule(model, graph)
        self.detach = detach
        # the model's own forward pre-hooks run before the graph (a weak reference to pass them
        # the model: the cache must not keep it alive); kwargs pre-hooks are not supported
        self._model, self._pre_hooks = weakref.ref(model), model._forward_pre_hooks
        own = (model._forward_hooks, model._forward_pre_hooks_with_kwargs, model._backward_hooks,
               model._backward_pre_hooks)
        # hooks the graph would not run: those of the model and of modules traced through (held
        # as their registries, not the modules, for the same reason)
        self._skipped = [(type(model).__name__, own)] + [(type(m).__name__, _hook_dicts(m)) for m in tracer.inlined]
        self._skipped += [(name, (hooks,)) for name, hooks in _GLOBAL_HOOKS.items()]
        self._registries = tuple(hooks for _, registries in self._skipped for hooks in registries)

    def skipped_hooks(self) -> list[str]:
        """Where hooks are registered that the graph would not run: on the model, on a module
        traced through, or globally (hooks on the leaf modules run as in ``model(...)``)."""
        return [name for name, registries in self._skipped if any(registries)]

    def _run_pre_hooks(self, args: tuple) -> tuple:
        """The model's forward pre-hooks, in order, with ``nn.Module.__call__``'s semantics (a
        hook returning something replaces the positional arguments)."""
        model = self._model()
        for hook in list(self._pre_hooks.values()):
            result = hook(model, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        return args

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, ActivationCache]:
        if any(self._registries):  # one check per call; the names only for the message
            raise TraceError(f"hooks registered on {self.skipped_hooks()} would not run in the traced graph; "
                             f"capture with deepaudit.internals.capture (forward hooks) instead")
        if self._pre_hooks:
            args = self._run_pre_hooks(args)
        output, acts = self.module.forward(*args, **kwargs)
        if self.detach:  # tensors without autograd history stay as they are (no detach call each)
            acts = {name: act.detach() if act.requires_grad else act for name, act in acts.items()}
        return output, ActivationCache(acts)


_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, TracedCapture | str]] = weakref.WeakKeyDictionary()


def trace_capture(model: nn.Module, names: Sequence[str], detach: bool = True) -> TracedCapture:
    """The traced capture of ``names`` for ``model``: traced on the first call, then cached
    (per model object, names, ``detach`` and ``model.training``), so later calls cost a lookup;
    a model that failed to trace fails again at once."""
    per_model = _CACHE.get(model)
    if per_model is None:
        per_model = _CACHE[model] = {}
    key = (tuple(names), detach, model.training)
    if key not in per_model:
        try:
            per_model[key] = TracedCapture(model, names, detach)
        except TraceError as error:
            per_model[key] = str(error)
            raise
    found = per_model[key]
    if isinstance(found, str):
        raise TraceError(found)
    return found


def capture_traced(model: nn.Module, names: Sequence[str], *args: Any, detach: bool = True,
                   **kwargs: Any) -> tuple[Any, ActivationCache]:
    """Run ``model(*args, **kwargs)`` once without hooks; return its output and the outputs of
    ``names`` (the tensors ``capture`` would record). Raises TraceError where fx cannot trace
    the model, or where hooks on the model or on a module traced through would be skipped."""
    return trace_capture(model, names, detach)(*args, **kwargs)


def zoo_traced(model: nn.Module, names: Sequence[str]) -> TracedCapture | None:
    """The traced capture for one of the zoo's architectures with no hook the graph would skip
    (``run_with_cache`` uses it), or None: other models, untraceable ones, and hooked ones (an
    intervention on a module traced through) keep hooks. An audited subject's cost meter, a
    forward pre-hook on the model, runs in the traced call."""
    if type(model) not in ARCHITECTURES.values():
        return None
    try:
        run = trace_capture(model, names)
    except TraceError:
        return None
    return None if any(run._registries) else run
