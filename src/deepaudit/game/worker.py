"""The tools' side of the seal: a process that holds organisms' public files and nothing of the
truth. For each job folder JOB it is given, ``python -m deepaudit.game.worker`` reads
``JOB/job.json`` (written by ``deepaudit.game.seal``), opens the organism from ``JOB/public``
(its card and weights, the only files there), asks every tool its roles, and writes one reply
per tool (``JOB/reply-<i>.json``) as soon as it has it, so that a crash loses only the tool it
happened in. One worker serves one referee process's jobs in turn (``serve``): its start
(Python, PyTorch, the registry) is paid once. ``answer`` is the same work in the caller's
process (``deepaudit.game.referee.ask_and_score``)."""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import select
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from deepaudit.findings import Cost
from deepaudit.game.roles import ROLES
from deepaudit.game.wire import read, write
from deepaudit.tools.base import Verdict
from deepaudit.tools.findings import shared, verdict_key, verdict_of
from deepaudit.tools.registry import ToolSpec, tool_spec
from deepaudit.zoo import Organism, family
from deepaudit.zoo.folder import fixed_threads

Ask = tuple[str, Mapping[str, Any], Sequence[str]]  # a tool's name, its explicit parameters, the roles to ask


def unmet_needs(spec: ToolSpec, subject: Any) -> list[str]:
    """What the tool needs that this subject lacks (labels, the base model)."""
    missing = []
    if "labels" in spec.needs and getattr(subject, "trusted_labels", 0) is None:
        missing.append("labels on the trusted data")
    if "base_model" in spec.needs and getattr(subject, "base", 0) is None:
        missing.append("the base model")
    return missing


def ask_tool(organism: Organism, name: str, overrides: Mapping[str, Any], roles: Sequence[str],
             questions: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """One tool's answers to ``roles`` on a fresh subject, as plain data, with its own cost:
    seconds and examples forwarded, less the findings it shared (listed in ``used``)."""
    spec = tool_spec(name)
    subject = organism.subject()
    if missing := unmet_needs(spec, subject):
        return {"status": "skipped", "record": {"skipped": "lacks " + ", ".join(missing)}}
    tool = spec.make(seed, **overrides)
    findings = organism.findings
    own_verdict = verdict_key(name, dict(overrides)) if "detect" in roles and seed == findings.seed else None
    busy, busy_cpu, before = findings.busy_s, findings.busy_cpu_s, subject.forward_passes
    start, cpu = time.perf_counter(), time.process_time()
    values: dict[str, Any] = {}
    record: dict[str, Any] = {}
    with findings.watch() as used:
        for role in roles:
            if role == "detect" and spec.provides and not overrides:  # it computes a shared finding: reuse it
                own = values[role] = shared(subject, spec.provides).to_json()
            elif role == "detect" and own_verdict in findings.values:  # a combination asked for it already
                own = values[role] = verdict_of(subject, name, seed, **overrides).to_json()
            else:
                values[role], own = ROLES[role].ask(tool, subject, questions.get(role), seed)
            record.update(own)
    wall = time.perf_counter() - start - (findings.busy_s - busy)
    own_cpu = max(time.process_time() - cpu - (findings.busy_cpu_s - busy_cpu), 0.0)
    passes = subject.forward_passes - before
    if own_verdict is not None and own_verdict not in findings.values and "detect" in values:  # for combinations
        findings.put(own_verdict, Verdict.from_json(values["detect"]), Cost(wall, passes, own_cpu))
    return {"status": "done", "values": values, "record": record, "wall_s": max(wall, 0.0), "cpu_s": own_cpu,
            "forward_passes": passes, "used": sorted(used)}


def answer(organism: Organism, asks: Sequence[Ask], questions: Mapping[str, Any], seed: int) -> Iterator[dict[str, Any]]:
    """Each tool's reply in turn; a tool that raises gets an error reply and the others go on.
    Each reply lists the whole cost of every shared finding it used."""
    for name, overrides, roles in asks:
        try:
            reply = ask_tool(organism, name, overrides, roles, questions, seed)
        except Exception as exc:  # one broken tool must not lose the other tools' answers
            reply = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        reply["shared"] = {n: organism.findings.cost[n].to_json() for n in reply.get("used", ())}
        yield reply


def _load_plugins(plugins: Sequence[Mapping[str, str]]) -> None:
    """Import the modules that registered tools from outside the package (by name, else by file)."""
    for plugin in plugins:
        if plugin["module"] in sys.modules:
            continue
        try:
            importlib.import_module(plugin["module"])
        except ImportError:
            spec = importlib.util.spec_from_file_location(plugin["module"], plugin["file"])
            if spec is None or spec.loader is None:
                raise
            module = importlib.util.module_from_spec(spec)
            sys.modules[plugin["module"]] = module
            spec.loader.exec_module(module)


def run_job(job: Path) -> None:
    """Answer the job in the folder ``job`` (see the module docstring)."""
    request = read(job / "job.json")
    asks = [(a["name"], a["overrides"], a["roles"]) for a in request["asks"]]
    try:
        _load_plugins(request["plugins"])
        organism = family(request["family"]).open(job / "public", request["seed"], request["budget"],
                                                  request["settings"])
        replies = answer(organism, asks, request["questions"], request["seed"])
    except Exception as exc:  # the organism could not be opened: every tool of it fails
        replies = iter([{"status": "error", "error": f"{type(exc).__name__}: {exc}"} for _ in asks])
    for i, reply in enumerate(replies):
        write(job / f"reply-{i}.json", reply)


MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096


def _mount(source: str | None, target: Path, fstype: str | None, flags: int, data: str | None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source and source.encode(), str(target).encode(), fstype and fstype.encode(), flags,
                  data and data.encode()):
        errno = ctypes.get_errno()
        raise OSError(errno, f"cannot hide {target}: {os.strerror(errno)}")


def hide(folders: Sequence[str]) -> None:
    """Cover each folder with an empty read-only file system (in the worker's own mount namespace,
    where ``deepaudit.game.seal`` started it in one), before any tool is asked. What the worker
    needs stays visible where a covered folder holds it: its own folder (the working directory)
    and the folders Python imports from (a checkout or a virtual environment under /tmp, where
    the registries find their modules)."""
    own = Path.cwd()
    hidden = [Path(f).resolve() for f in folders]
    needed = {p.resolve() for p in (own, *(Path(p) for p in sys.path if p and Path(p).is_dir()), Path(__file__).parents[1])}
    # never one that is, or holds, a folder to hide: binding it back would show what it holds
    kept = {path: os.open(path, os.O_PATH) for path in needed
            if path == own.resolve() or not any(h.is_relative_to(path) for h in hidden)}
    covered: list[Path] = []
    for folder in sorted({Path(f) for f in folders}, key=lambda p: len(p.parts)):
        if not folder.is_dir() or any(folder.is_relative_to(c) for c in covered):
            continue
        _mount("sealed", folder, "tmpfs", 0, "size=64k,mode=755")
        for path, handle in kept.items():
            if path.is_relative_to(folder):
                path.mkdir(parents=True, exist_ok=True)
                _mount(f"/proc/self/fd/{handle}", path, None, MS_BIND, None)
        _mount(None, folder, None, MS_REMOUNT | MS_RDONLY, None)
        covered.append(folder)
    for handle in kept.values():
        os.close(handle)
    os.chdir(own)


def _exit_with_referee(fd: int) -> None:
    """Exit as soon as the referee's end of the reply pipe closes (the referee died or was
    killed), even in the middle of a long job: an orphaned worker would go on computing."""
    poller = select.poll()
    poller.register(fd, select.POLLERR | select.POLLHUP)
    while True:
        if poller.poll():
            os._exit(1)


def serve(hidden: Sequence[str] = ()) -> None:
    """Answer jobs until stdin closes: one job folder per line in, ``done`` per job out. What a
    tool prints goes to stderr, so that stdout carries only the replies' signals."""
    hide(hidden)
    signals = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    threading.Thread(target=_exit_with_referee, args=(signals.fileno(),), daemon=True).start()
    with fixed_threads():
        for line in sys.stdin:
            job = Path(line.strip())
            os.chdir(job)
            run_job(job)
            os.chdir(job.parent)
            signals.write("done\n")
            signals.flush()


if __name__ == "__main__":
    serve(sys.argv[2::2])  # --hide FOLDER ...
