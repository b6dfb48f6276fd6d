"""The grid on a multi-node Ray cluster, joined by address (``--ray-address``), stores the
in-process run's scores. The nodes run on this machine (``ray.cluster_utils.Cluster``: separate
raylets with their own object stores, which is how Ray tests multi-node code): a head with no
CPU, where the driver runs, and two worker nodes with one CPU each, so every cell runs on
another node than the driver and its result crosses nodes. A cluster across machines also needs
the zoo on a shared file system (README)."""

from __future__ import annotations

import pytest

from deepaudit.game.runner import run_game
from test_scale import TOOLS, scores

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'deepaudit[ray]'")


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_cluster_by_address_gives_the_in_process_scores(smoke_zoo, tmp_path, cluster):
    reference, store = tmp_path / "reference.sqlite", tmp_path / "cluster.sqlite"
    run_game("smoke", tools=TOOLS, store=reference, zoo_dir=smoke_zoo.dir)
    summary = run_game("smoke", tools=TOOLS, store=store, zoo_dir=smoke_zoo.dir, executor="ray",
                       ray_address=cluster.address)
    assert sorted(node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]) == [0, 1, 1]
    assert summary.ran + summary.not_applicable == len(smoke_zoo.manifest["organisms"]) * len(TOOLS)
    assert summary.failed == []
    assert scores(store) == scores(reference)
