"""Max pooling through the channels-last kernel: the same logits and input gradients as the plain
layers, bit for bit; the layers are put back after the block, also after an exception; layers
the fast path does not cover are left alone."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from deepaudit.internals.pooling import channels_last_pooling


def cnn(dims: int) -> nn.Module:
    conv, pool = (nn.Conv1d, nn.MaxPool1d) if dims == 1 else (nn.Conv2d, nn.MaxPool2d)
    torch.manual_seed(0)
    width = 8 if dims == 2 else 40
    return nn.Sequential(conv(1, 8, 3, padding=1), nn.ReLU(), conv(8, 16, 3, padding=1), nn.ReLU(), pool(2),
                         nn.Flatten(), nn.Linear(16 * (width // 2) ** dims, 10)).eval().requires_grad_(False)


def logits_and_gradient(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    logits = model(x)
    logits.logsumexp(1).sum().backward()
    assert x.grad is not None
    return logits.detach(), x.grad


@pytest.mark.parametrize("dims", [1, 2])
def test_the_fast_layers_give_the_plain_layers_numbers_bit_for_bit(dims):
    model = cnn(dims)
    x = torch.rand(64, 1, *([8, 8] if dims == 2 else [40]), generator=torch.Generator().manual_seed(1))
    plain = logits_and_gradient(model, x)
    with channels_last_pooling(model):
        assert type(model[4]).__name__.startswith("_ChannelsLast")  # the fast path is the one being tested
        fast = logits_and_gradient(model, x)
        with torch.no_grad():
            assert torch.equal(model(x), plain[0])  # without a gradient: the plain kernel
    assert torch.equal(fast[0], plain[0]) and torch.equal(fast[1], plain[1])
    assert type(model[4]) in (nn.MaxPool1d, nn.MaxPool2d)  # put back


def test_weight_gradients_are_the_plain_layers_too():
    model, x = cnn(2).requires_grad_(True), torch.rand(16, 1, 8, 8)
    model(x).sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with channels_last_pooling(model):
        model(x).sum().backward()
    assert all(torch.equal(p.grad, q) for p, q in zip(model.parameters(), plain, strict=True))


def test_the_layers_are_put_back_after_an_exception_and_a_copy_made_within_still_works():
    model = cnn(2)
    with pytest.raises(RuntimeError, match="inside"), channels_last_pooling(model):
        inside = copy.deepcopy(model)
        raise RuntimeError("inside")
    assert type(model[4]) is nn.MaxPool2d
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(logits_and_gradient(inside, x)[1], logits_and_gradient(model, x)[1])


def test_layers_the_fast_path_does_not_cover_are_left_alone():
    padded, ceil, indices = nn.MaxPool2d(2, padding=1), nn.MaxPool2d(3, ceil_mode=True), nn.MaxPool2d(2, return_indices=True)

    class OwnPool(nn.MaxPool2d):
        pass

    own = OwnPool(2)
    model = nn.Sequential(padded, ceil, own, indices)
    with channels_last_pooling(model):
        assert [type(layer) for layer in model] == [nn.MaxPool2d, nn.MaxPool2d, OwnPool, nn.MaxPool2d]


def test_the_pooling_benchmark_checks_the_numbers_on_the_zoos_cnns(capsys):
    from deepaudit.bench import run_benchmark

    run_benchmark("pooling", ["--repeats", "1"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "CNN (" in line]
    assert len(rows) == 4 and all(line.rstrip(" │").endswith("yes") for line in rows)
    assert "reproduce: nice deepaudit bench pooling --repeats 1" in out
