"""Activation capture and intervention: only the named modules, right shapes, hooks always
removed, interventions really replace outputs, and batching changes nothing; the traced
(torch.fx) capture gives exactly the hooks' tensors, is cached, and refuses what it cannot do."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from deepaudit.internals import (
    ActivationCache,
    TraceError,
    capture,
    capture_traced,
    intervene,
    module_inputs,
    module_names,
    run_with_cache,
    traced,
)
from deepaudit.models import build_model


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("mlp", (1, 8, 8), 10).eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(50, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def hooks(model: torch.nn.Module) -> dict[str, int]:
    """Number of forward hooks per module name."""
    return {name: len(m._forward_hooks) for name, m in model.named_modules()}


def no_hooks(model: torch.nn.Module) -> bool:
    return not any(hooks(model).values())


def test_capture_only_named_modules(model, x):
    """Only the named modules are hooked and captured, with the right shapes."""
    with capture(model, ["fc1", "act2"]) as cache:
        assert {n for n, k in hooks(model).items() if k} == {"fc1", "act2"}
        model(x)
    assert set(cache) == {"fc1", "act2"}
    assert cache["fc1"].shape == (50, 128)
    assert cache["act2"].shape == (50, 64)
    assert (cache["act2"] >= 0).all()  # a ReLU output, not the fc2 output before it


def test_capture_concatenates_forward_passes(model, x):
    """Two forward passes in one block append along the batch dimension."""
    with capture(model, ["fc2"]) as cache:
        model(x[:20])
        model(x[20:])
    with capture(model, ["fc2"]) as whole:
        model(x)
    assert cache["fc2"].shape == (50, 64)
    torch.testing.assert_close(cache["fc2"], whole["fc2"])


def test_capture_detach_option(model, x):
    """detach=False keeps the autograd graph; the default detaches."""
    x = x.clone().requires_grad_(True)
    with capture(model, ["fc1"], detach=False) as kept:
        model(x)
    with capture(model, ["fc1"]) as detached:
        model(x)
    assert kept["fc1"].requires_grad and not detached["fc1"].requires_grad


def test_hooks_removed_after_block(model, x):
    """Hooks are gone after a normal exit from capture and intervene."""
    with capture(model, module_names(model)):
        model(x)
    with intervene(model, {"fc1": lambda out: out}):
        model(x)
    assert no_hooks(model)


def test_hooks_removed_after_exception(model, x):
    """Hooks are gone even when the block raises, and the exception propagates."""
    with pytest.raises(RuntimeError, match="boom"):
        with capture(model, ["fc1", "head"]):
            assert not no_hooks(model)
            raise RuntimeError("boom")
    assert no_hooks(model)
    with pytest.raises(RuntimeError, match="boom"):
        with intervene(model, {"act1": torch.zeros_like}):
            raise RuntimeError("boom")
    assert no_hooks(model)


def test_intervene_replaces_output(model, x):
    """Zeroing the head's input makes the logits equal the head bias; outside, they are restored."""
    with torch.no_grad():
        before = model(x)
        with intervene(model, {"act2": torch.zeros_like}):
            zeroed = model(x)
        after = model(x)
    torch.testing.assert_close(zeroed, model.head.bias.expand(50, -1))
    assert not torch.allclose(before, zeroed)
    torch.testing.assert_close(after, before)


def test_unknown_module_raises_keyerror(model):
    """An unknown module name is a KeyError naming it, and leaves no hook behind."""
    with pytest.raises(KeyError, match="nope"):
        with capture(model, ["fc1", "nope"]):
            pass
    with pytest.raises(KeyError, match="missing_layer"):
        with intervene(model, {"missing_layer": torch.zeros_like}):
            pass
    assert no_hooks(model)


def test_run_with_cache_batching(model, x):
    """Small batches give the same logits and activations as one big batch."""
    logits_small, cache_small = run_with_cache(model, x, ["fc1", "act2"], batch_size=7)
    logits_big, cache_big = run_with_cache(model, x, ["fc1", "act2"], batch_size=512)
    assert logits_small.shape == (50, 10) and cache_small["fc1"].shape == (50, 128)
    torch.testing.assert_close(logits_small, logits_big)
    torch.testing.assert_close(logits_small, model(x).detach())
    for name in ("fc1", "act2"):
        torch.testing.assert_close(cache_small[name], cache_big[name])
    assert no_hooks(model)


# --- traced capture (torch.fx graph that returns the activations; deepaudit.internals.traced)


def zoo_cases() -> list[tuple[torch.nn.Module, torch.Tensor]]:
    """The zoo MLP and the zoo CNN in its 2-D (digits) and 1-D (MNIST-1D) forms, with inputs."""
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    return [(build_model("mlp", (1, 8, 8), 10).eval(), torch.rand(9, 1, 8, 8, generator=g)),
            (build_model("cnn", (1, 8, 8), 10).eval(), torch.rand(9, 1, 8, 8, generator=g)),
            (build_model("cnn", (1, 40), 10).eval(), torch.rand(9, 1, 40, generator=g))]


def test_traced_equals_hooks_exactly():
    """Every layer and a subset: same names in the same order, bit-identical tensors and output."""
    for model, x in zoo_cases():
        for names in (module_names(model), ["act2", "fc1" if "fc1" in module_names(model) else "conv1"]):
            with torch.no_grad(), capture(model, names) as hooked:
                expected = model(x)
            with torch.no_grad():
                output, cache = capture_traced(model, names, x)
            assert isinstance(cache, ActivationCache) and list(cache) == list(hooked)
            assert torch.equal(output, expected)
            assert all(torch.equal(cache[name], hooked[name]) for name in names)
            assert no_hooks(model)


def test_traced_detach_option():
    """detach=False keeps the autograd graph (gradients flow back to the input), like hooks."""
    model, x = zoo_cases()[1]
    x = x.clone().requires_grad_(True)
    _, kept = capture_traced(model, ["act1"], x, detach=False)
    _, detached = capture_traced(model, ["act1"], x)
    assert kept["act1"].requires_grad and not detached["act1"].requires_grad
    kept["act1"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_traced_cache_reuse_and_release():
    """The trace is made once per (model, names, detach, mode) and dropped with the model."""
    model, x = zoo_cases()[1]
    names = module_names(model)
    first = traced.trace_capture(model, names)
    assert traced.trace_capture(model, names) is first and traced.trace_capture(model, list(names)) is first
    assert traced.trace_capture(model, names[:2]) is not first
    assert traced.trace_capture(model, names, detach=False) is not first
    assert traced.trace_capture(model.train(), names) is not first
    assert model in traced._CACHE
    gone = weakref.ref(model)
    del model, first
    gc.collect()
    assert gone() is None  # the cache does not keep the model alive


class Branchy(torch.nn.Module):
    """Control flow that depends on the input's values: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


def test_traced_untraceable_model_raises_clear_error():
    """A model fx cannot trace is a TraceError naming it and the hook path, also when asked again;
    run_with_cache captures it through hooks instead."""
    model, x = Branchy(), torch.rand(3, 4)
    for _ in range(2):
        with pytest.raises(TraceError, match="cannot trace Branchy.*deepaudit.internals.capture"):
            capture_traced(model, ["fc"], x)
    _, cache = run_with_cache(model, x, ["fc"])
    torch.testing.assert_close(cache["fc"], model.fc(x).detach())
    assert no_hooks(model)


def test_traced_runs_model_pre_hooks_and_refuses_hooks_it_would_skip():
    """A forward pre-hook on the model itself (the audit's cost meter) runs in the traced call as
    in ``model(x)``, replacing the input when it returns one; a forward hook on the model would
    not run in the graph: capture_traced refuses, run_with_cache falls back to hooks."""
    from deepaudit.subject import CostMeter

    model, x = zoo_cases()[1]
    meter = CostMeter(model)
    assert traced.zoo_traced(model, ["act1"]) is not None  # the meter keeps the traced path
    _, cache = run_with_cache(model, x, ["act1"], batch_size=4)
    assert meter.forward_passes == 9
    handle = model.register_forward_pre_hook(lambda _m, inputs: (inputs[0] * 0,))
    _, zeroed = capture_traced(model, ["act1"], x)
    with torch.no_grad(), capture(model, ["act1"]) as hooked:
        model(x)
    assert torch.equal(zeroed["act1"], hooked["act1"]) and not torch.equal(zeroed["act1"], cache["act1"])
    handle.remove()
    seen = []
    handle = model.register_forward_hook(lambda _m, _inputs, out: seen.append(len(out)))
    with pytest.raises(TraceError, match="would not run"):
        capture_traced(model, ["act1"], x)
    _, hooked_cache = run_with_cache(model, x, ["act1"], batch_size=4)
    assert seen == [4, 4, 1] and torch.equal(hooked_cache["act1"], cache["act1"])
    handle.remove()


def test_run_with_cache_traced_path_matches_hooks():
    """On a zoo model run_with_cache (traced) equals hook capture, in batches and under an
    intervention on a captured module (its hook runs inside the graph)."""
    model, x = zoo_cases()[1]
    names = module_names(model)
    assert traced.zoo_traced(model, names) is not None  # the traced path, not the hooks fallback
    for batch_size in (4, 512):
        logits, cache = run_with_cache(model, x, names, batch_size=batch_size)
        with torch.no_grad(), capture(model, names) as hooked:
            expected = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        assert torch.equal(logits, expected) and list(cache) == list(hooked)
        assert all(torch.equal(cache[name], hooked[name]) for name in names)
    with intervene(model, {"act1": torch.zeros_like}):
        assert traced.zoo_traced(model, names) is not None
        _, cache = run_with_cache(model, x, names)
        with torch.no_grad(), capture(model, names) as hooked:
            model(x)
    assert not cache["act1"].any() and all(torch.equal(cache[name], hooked[name]) for name in names)
    assert no_hooks(model)


def test_allocator_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    """The deepaudit command keeps freed memory unless DEEPAUDIT_MALLOC=system; a wrong value is a clear error."""
    from deepaudit.errors import DeepAuditError
    from deepaudit.internals import allocator

    monkeypatch.setenv(allocator.ENV, "system")
    assert allocator.configure_from_env() == "system"
    monkeypatch.setenv(allocator.ENV, "bogus")
    with pytest.raises(DeepAuditError, match="DEEPAUDIT_MALLOC='bogus'"):
        allocator.configure_from_env()
    monkeypatch.delenv(allocator.ENV)
    expected = "keep" if allocator._libc_mallopt() is not None else "system"
    assert allocator.configure_from_env() == expected


def test_module_inputs_gives_what_a_layer_receives_each_call_and_removes_its_hook():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.randn(5, 4)
    seen, output = module_inputs(model, model[2], x)
    assert len(seen) == 1 and torch.equal(seen[0], torch.relu(model[0](x))) and torch.equal(output, model(x))
    assert not model[2]._forward_pre_hooks and not seen[0].requires_grad
    with pytest.raises(RuntimeError):
        module_inputs(model, model[2], torch.randn(5, 7))  # the model fails: the hook is still removed
    assert not model[2]._forward_pre_hooks
