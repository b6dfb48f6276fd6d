"""Where independent jobs (grid cells, organism builds) run: in this process, in a local
process pool, or as Ray tasks on a local or remote Ray cluster. Every executor hands each
result back to the caller as it finishes, so the caller (the driver) alone writes the
results store, and resuming works the same whichever executor ran the finished part."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Protocol

from deepaudit.errors import DeepAuditError

EXECUTORS = ("local", "ray")

Outcome = tuple[int, Any, BaseException | None]  # index of the job, its result, or the error it raised


class ExecutorError(DeepAuditError):
    """An executor cannot be used as asked (unknown name, Ray missing or unreachable)."""


class Executor(Protocol):
    """Runs ``fn(*args)`` for each argument tuple; yields (index, result, error) in completion order."""

    def run(self, fn: Callable[..., Any], jobs: Sequence[tuple]) -> Generator[Outcome, None, None]: ...


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _call_single_threaded(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a job on one torch thread: the workers share the cores between them."""
    _single_thread()
    return fn(*args)


class LocalExecutor:
    """In this process (``jobs=1``: errors surface in order, easiest to debug) or in a pool of
    ``jobs`` worker processes on this machine."""

    def __init__(self, jobs: int = 1):
        self.jobs = jobs

    def run(self, fn: Callable[..., Any], jobs: Sequence[tuple]) -> Generator[Outcome, None, None]:
        if self.jobs <= 1:
            for i, args in enumerate(jobs):
                error: BaseException | None = None
                try:
                    result = fn(*args)
                except Exception as exc:  # one broken job is reported, not fatal; Ctrl-C still stops
                    result, error = None, exc
                yield i, result, error
            return
        with ProcessPoolExecutor(self.jobs, initializer=_single_thread) as pool:
            pending = {pool.submit(fn, *args): i for i, args in enumerate(jobs)}
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        i = pending.pop(future)
                        error = future.exception()
                        yield i, None if error is not None else future.result(), error
            finally:
                for future in pending:
                    future.cancel()


class RayExecutor:
    """Ray tasks, one CPU each. Joins the Ray already initialised in this process, else
    ``ray.init(address)``: ``None`` starts a local Ray with ``num_cpus`` CPUs, ``"auto"`` or
    ``"ray://host:10001"`` joins a cluster. Remote workers must see the same zoo folder (a
    shared file system) and have deepaudit installed. Ray retries a task whose worker died;
    a task that still fails comes back as an error, and a rerun redoes it."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        try:
            import ray
        except ImportError as exc:
            raise ExecutorError("the ray executor needs Ray: pip install 'deepaudit[ray]' (or pip install ray)") from exc
        self.ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=address, num_cpus=num_cpus if address is None else None,
                         include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ExecutorError(f"cannot start or join Ray at {address or 'a new local cluster'}: {exc}") from exc

    def run(self, fn: Callable[..., Any], jobs: Sequence[tuple]) -> Generator[Outcome, None, None]:
        ray = self.ray
        task = ray.remote(num_cpus=1)(_call_single_threaded)
        pending = {task.remote(fn, *args): i for i, args in enumerate(jobs)}
        try:
            while pending:
                finished, _ = ray.wait(list(pending), num_returns=1)
                for ref in finished:
                    i = pending.pop(ref)
                    result, error = None, None
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # the job raised: report its own error
                        error = exc.cause if isinstance(exc.cause, BaseException) else exc
                    except ray.exceptions.RayError as exc:  # the worker died or the task was lost
                        error = exc
                    yield i, result, error
        finally:
            for ref in pending:
                ray.cancel(ref)


def make_executor(name: str = "local", jobs: int = 1, address: str | None = None) -> Executor:
    """An executor by name: ``local`` (``jobs`` processes) or ``ray`` (at ``address``;
    a new local Ray gets ``jobs`` CPUs)."""
    if name == "local":
        if address is not None:
            raise ExecutorError("--ray-address needs --executor ray")
        return LocalExecutor(jobs)
    if name == "ray":
        return RayExecutor(address, num_cpus=jobs)
    raise ExecutorError(f"unknown executor {name!r}; choose one of {list(EXECUTORS)}")
