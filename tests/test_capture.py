"""Activation capture and intervention: only the named modules, right shapes, hooks always
removed, interventions really replace outputs, and batching changes nothing."""

from __future__ import annotations

import pytest
import torch

from deepaudit.internals import capture, intervene, module_names, run_with_cache
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
