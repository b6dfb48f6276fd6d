"""Scale-out: the grid gives the same scores in this process, in a local process pool and on
a local Ray, for every organism family; a run interrupted half-way resumes with only the
unfinished organisms and ends with the same scores as an uninterrupted run."""

from __future__ import annotations

import os
import sys
import tempfile

import pytest

from deepaudit.executors import ExecutorError, LocalExecutor, make_executor
from deepaudit.game.runner import run_game
from deepaudit.game.store import Store

TOOLS = ["weight_stats", "mahalanobis", "strip"]


def scores(store, suite: str = "smoke") -> dict[tuple[str, str, str], tuple]:
    """(organism, tool, track) -> (status, scores, answer) of every cell in a store."""
    db = Store(store)
    try:
        return {(c["organism_id"], c["tool"], c["track"]): (c["status"], c["scores"], c["answer"])
                for status in ("done", "skipped") for c in db.cells(suite, 0, status=status)}
    finally:
        db.close()


@pytest.fixture(scope="module")
def reference(smoke_zoo, tmp_path_factory) -> dict:
    """The uninterrupted in-process run (jobs=1): the scores every other run must reproduce."""
    store = tmp_path_factory.mktemp("reference") / "results.sqlite"
    summary = run_game("smoke", tools=TOOLS, store=store, zoo_dir=smoke_zoo.dir)
    assert (summary.ran + summary.not_applicable, summary.failed) == (len(smoke_zoo.manifest["organisms"]) * len(TOOLS), [])
    return {"cells": scores(store), "pairs": summary.ran + summary.not_applicable}


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs for this module, shut down afterwards."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'deepaudit[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_run_gives_the_in_process_scores(smoke_zoo, reference, local_ray, tmp_path):
    """Every cell run as a Ray task scores exactly as it does in this process."""
    store = tmp_path / "results.sqlite"
    summary = run_game("smoke", tools=TOOLS, store=store, zoo_dir=smoke_zoo.dir, jobs=2, executor="ray")
    assert (summary.ran + summary.not_applicable, summary.already_done, summary.failed) == (reference["pairs"], 0, [])
    assert scores(store) == reference["cells"]


@pytest.mark.parametrize("suite", ["lm-tiny", "grok-tiny"])
def test_every_family_runs_on_ray_as_in_process(suite, lm_tiny_zoo, local_ray, tmp_path):
    """The language-model and training-run suites go through the same runner: on Ray their
    cells equal the in-process run's."""
    zoo = lm_tiny_zoo.dir
    here, there = tmp_path / "here.sqlite", tmp_path / "ray.sqlite"
    first = run_game(suite, store=here, zoo_dir=zoo)
    second = run_game(suite, store=there, zoo_dir=zoo, jobs=2, executor="ray")
    assert first.failed == second.failed == [] and first.ran == second.ran > 0
    assert first.not_applicable == second.not_applicable
    assert scores(there, suite) == scores(here, suite)


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_interrupted_run_resumes_to_the_same_scores(smoke_zoo, reference, tmp_path, executor, request):
    """Ctrl-C after the first organism (2 worker processes or Ray tasks): its cells are stored;
    the rerun runs only the rest, and the store ends equal to the uninterrupted run's."""
    if executor == "ray":
        request.getfixturevalue("local_ray")
    store = tmp_path / "results.sqlite"
    seen = []

    def stop_after_one_organism(organism, tool, status):
        seen.append((organism, tool))
        if len(seen) == len(TOOLS):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_game("smoke", tools=TOOLS, store=store, zoo_dir=smoke_zoo.dir, jobs=2, executor=executor,
                 on_cell=stop_after_one_organism)
    assert {(o, t) for o, t, _ in scores(store)} == set(seen)
    rest = run_game("smoke", tools=TOOLS, store=store, zoo_dir=smoke_zoo.dir, jobs=2, executor=executor)
    assert (rest.ran + rest.not_applicable, rest.already_done, rest.failed) == (
        reference["pairs"] - len(TOOLS), len(TOOLS), [])
    assert scores(store) == reference["cells"]


def test_local_pool_reports_a_failing_job_and_keeps_the_others():
    """A job that raises comes back as its error, in its own slot; the others still finish."""
    outcomes = {i: (result, error) for i, result, error in LocalExecutor(2).run(divmod, [(7, 2), (1, 0), (9, 3)])}
    assert outcomes[0] == ((3, 1), None) and outcomes[2] == ((3, 0), None)
    assert outcomes[1][0] is None and isinstance(outcomes[1][1], ZeroDivisionError)


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_killed_worker_is_an_error_not_a_hang(executor, request):
    """A job whose worker process dies comes back as an error (on Ray after its retries), so
    the runner stores a failed cell, which the next run redoes."""
    if executor == "ray":
        request.getfixturevalue("local_ray")
    pool = make_executor(executor, jobs=2)
    outcomes = {i: (result, error) for i, result, error in pool.run(os._exit, [(1,)])}
    assert list(outcomes) == [0] and outcomes[0][0] is None
    expected = {"local": "BrokenProcessPool", "ray": "WorkerCrashedError"}[executor]
    assert type(outcomes[0][1]).__name__ == expected, outcomes


def test_executor_choices_are_checked(monkeypatch):
    """Unknown executors, an address without Ray, and a missing Ray are clear errors."""
    with pytest.raises(ExecutorError, match="unknown executor 'dask'"):
        make_executor("dask")
    with pytest.raises(ExecutorError, match="--executor ray"):
        make_executor("local", address="auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ExecutorError, match=r"pip install 'deepaudit\[ray\]'"):
        make_executor("ray")


def test_a_local_pool_leaves_no_sealed_folder_behind(smoke_zoo, tmp_path, monkeypatch):
    """Each pool process's sealed worker folder is removed when the pool's processes exit (they
    leave through multiprocessing, which runs no atexit handler)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    summary = run_game("smoke", tools=["weight_stats"], store=tmp_path / "results.sqlite", zoo_dir=smoke_zoo.dir, jobs=2)
    assert summary.failed == [] and summary.ran > 0
    assert not list(tmp_path.glob("deepaudit-seal-*"))
