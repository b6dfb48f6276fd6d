"""Neural Cleanse over smooth warps (``warp_cleanse``) and the warp it searches with."""

from pathlib import Path

import numpy as np
import pytest
import torch

from deepaudit.subject import load_subject
from deepaudit.tools.neural_cleanse import AdaptiveCost
from deepaudit.tools.warp_cleanse import WarpCleanse, WarpSearch, log_flow_sizes
from deepaudit.triggers import Trigger, warp
from deepaudit.zoo import build_suite, read_truth

WARP_SUITE = """family = "vision"
name = "warp-smoke"
description = "a digits MLP with a warp backdoor and its clean twin"

[[group]]
datasets = ["digits"]
archs = ["mlp"]
implants = ["warp"]
epochs = 15
"""


@pytest.mark.parametrize("shape", [(6, 1, 8, 8), (6, 1, 40)])
def test_a_field_per_input_warps_each_input_as_that_field_alone(shape):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=gen)
    flows = 0.3 * torch.randn((shape[0], len(shape) - 2, *shape[2:]), generator=gen)
    together = warp(x, flows)
    alone = torch.cat([warp(x[i:i + 1], flows[i]) for i in range(shape[0])])
    assert torch.equal(together, alone)
    assert not torch.allclose(together, x)


def test_the_adaptive_cost_rises_while_a_trigger_works_and_keeps_its_smallest_norm():
    costs = AdaptiveCost(2, init_cost=1.0)
    better = costs.update(torch.tensor([0.5, 0.5]), torch.tensor([True, False]))
    assert better.tolist() == [True, False]
    assert costs.cost[0] > 1.0 > costs.cost[1]
    assert costs.update(torch.tensor([0.7, 0.2]), torch.tensor([True, True])).tolist() == [False, True]
    assert costs.best_norm.tolist() == pytest.approx([0.5, 0.2])
    assert costs.solved.all()


def test_a_warp_search_that_never_works_reports_its_final_field_at_twice_its_size():
    search = WarpSearch(3, (1, 8, 8), torch.Generator().manual_seed(0), lr=0.05, init_cost=0.1)
    stamped = search.stamp(torch.rand(1, 4, 1, 8, 8))
    assert stamped.shape == (12, 1, 8, 8)
    search.step(stamped.pow(2).flatten(1).mean(1).view(3, 4).mean(1), torch.tensor([True, False, False]))
    flows, solved = search.result()
    assert flows.shape == (3, 2, 8, 8) and solved.tolist() == [True, False, False]
    sizes = np.exp(log_flow_sizes(flows, solved))
    assert sizes[1] == pytest.approx(2 * float(flows[1].abs().mean()), rel=1e-4)
    with pytest.raises(ValueError, match="images or sequences"):
        WarpSearch(1, (4,), torch.Generator(), lr=0.05, init_cost=0.1)


@pytest.fixture(scope="module")
def warp_zoo(tmp_path_factory) -> dict[str, Path]:
    """A digits MLP with a warp backdoor and its clean twin (seconds to build)."""
    suite = tmp_path_factory.mktemp("suite") / "warp-smoke.toml"
    suite.write_text(WARP_SUITE)
    out = tmp_path_factory.mktemp("zoo")
    manifest = build_suite(str(suite), seed=0, out=out, store=out / "store.sqlite")
    roles = {"trojan" if read_truth(out / oid)["planted"] else "twin": out / oid for oid in manifest["organisms"]}
    assert set(roles) == {"trojan", "twin"}, manifest
    return roles


def test_warp_cleanse_names_a_warp_trojans_target_and_recovers_a_working_warp(warp_zoo):
    truth = read_truth(warp_zoo["trojan"])
    subject = load_subject(warp_zoo["trojan"], budget=256, seed=0)
    verdict = WarpCleanse(steps=150).audit(subject)
    twin = WarpCleanse(steps=150).audit(load_subject(warp_zoo["twin"], budget=256, seed=0))
    assert verdict.target == truth["target"]
    assert verdict.evidence["log_gap"] > twin.evidence["log_gap"]
    assert verdict.p_planted > twin.p_planted
    assert isinstance(verdict.trigger, Trigger) and verdict.trigger.kind == "warp"
    moved = subject.predict(verdict.trigger.apply(subject.clean_x)).argmax(1) == truth["target"]
    assert moved.float().mean() >= 0.5
