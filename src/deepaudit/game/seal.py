"""The referee's side of the seal: tools run in a separate worker process
(``deepaudit.game.worker``) that is handed an organism's public files and nothing else.

The worker lives in a private temporary folder holding a private ``home/`` with the public
caches the tools read (data sets, converted language models, the auditor's shadow models; the
shadow sets a worker trains are copied back after each job, since they come from the card and the
budget alone, so that no later worker or run trains them again) and, for each organism job, a
folder with ``public/`` (the organism's card, without its id, and weights: links to the zoo's
files, never the truth) and the job (the tools, their roles, the referee's questions: plain
data, ``deepaudit.game.wire``). The worker starts there with a scrubbed environment (no
``DEEPAUDIT_HOME``, no zoo or store path, ``HOME`` and ``TMPDIR`` inside the folder), so the
zoo's default path leads nowhere, and its stack, memory, working directory and ``/proc/self``
hold nothing but public data. Where Linux namespaces are available (``unshare``), the worker
also runs in its own PID and mount namespaces: ``/proc`` does not show the referee's process,
and the zoo, the deepaudit home and the scratch folders (``/tmp``, ``/var/tmp``, ``/dev/shm``,
where copies of zoos tend to lie) are covered by empty file systems, so that a search of the file
system finds no truth there. The referee reads the answers back as plain data and
scores them against the truth, which never entered the worker.

Not sealed: a copy of a zoo kept elsewhere on the file system, and, without namespaces (not
Linux, or ``unshare`` refused), the zoo itself, for a tool that searches the file system (it
runs as the same user). For an adversarial tool, run the game as a user that cannot read other
zoos, or in a container that mounts only what the game needs."""

from __future__ import annotations

import json
import multiprocessing.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import deepaudit
from deepaudit.errors import DeepAuditError
from deepaudit.game.wire import WireError, read, write
from deepaudit.game.worker import Ask
from deepaudit.paths import home
from deepaudit.subject import CARD_FILE
from deepaudit.tools.registry import tool_spec
from deepaudit.zoo.folder import public_files

SHARED_CACHES = ("data", "models", "cache/shadows")  # public caches under the deepaudit home that tools read
KEPT_CACHES = ("cache/shadows",)  # built by tools from public data alone (a card, the budget): kept for later workers
PRIVATE_CARD_KEYS = ("organism_id",)  # in older zoos' cards; a tool never sees them
SCRATCH = tuple(Path(p).resolve() for p in (tempfile.gettempdir(), "/var/tmp", "/dev/shm") if Path(p).is_dir())
KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "SYSTEMROOT")


class SealError(DeepAuditError):
    """The worker that runs the tools could not be started or gave no answer."""


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def expose(folder: Path, public: Path) -> None:
    """Put the organism's public files into ``public`` (links; the card rewritten without its id)."""
    public.mkdir(parents=True)
    for path in public_files(folder):
        if path.name == CARD_FILE:
            card = json.loads(path.read_text())
            (public / CARD_FILE).write_text(json.dumps({k: v for k, v in card.items() if k not in PRIVATE_CARD_KEYS}))
        else:
            _link_or_copy(path, public / path.relative_to(folder))


def _share_caches(private_home: Path) -> None:
    for name in SHARED_CACHES:
        root = home() / name
        for path in root.rglob("*") if root.is_dir() else ():
            if path.is_file() and not path.is_symlink():
                _link_or_copy(path, private_home / name / path.relative_to(root))


def _keep_built(private_home: Path) -> None:
    """Copy every complete set a worker built in a kept cache (a folder with its ``meta.json``)
    into the shared home, file by file, ``meta.json`` last, so that later workers and runs read it
    instead of training it again; what the home has already is left alone. The auditor's shadow
    models come from the card and the trusted budget only, so they carry nothing of the truth."""
    for name in KEPT_CACHES:
        for meta in sorted((private_home / name).glob("*/meta.json")):
            source, target = meta.parent, home() / name / meta.parent.name
            files = sorted(p for p in source.rglob("*") if p.is_file() and p != meta)
            for path in [*files, meta]:
                destination = target / path.relative_to(source)
                if not destination.exists():
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    partial = destination.with_name(f".{destination.name}.{os.getpid()}.partial")
                    shutil.copy2(path, partial)
                    os.replace(partial, destination)


def environment(base: Path) -> dict[str, str]:
    """The worker's environment: a few system variables, and every path pointing into ``base``."""
    env = {k: os.environ[k] for k in KEPT_ENVIRONMENT if k in os.environ}
    package_root = str(Path(deepaudit.__file__).resolve().parent.parent)
    env.update(HOME=str(base), TMPDIR=str(base / "tmp"), DEEPAUDIT_HOME=str(base / "home"), PYTHONPATH=package_root,
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    return env


@cache
def namespace_prefix() -> tuple[str, ...]:
    """``unshare`` into a new PID namespace (and a user namespace when not root), if this system allows it."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return ()
    user = () if os.geteuid() == 0 else ("--map-root-user",)
    prefix = (unshare, *user, "--pid", "--fork", "--mount-proc")
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return prefix if ok else ()


def _plugins(names: Sequence[str]) -> list[dict[str, str]]:
    """Modules outside the package that registered some of these tools (the worker imports them)."""
    out = {}
    for name in names:
        module = sys.modules[tool_spec(name).cls.__module__]
        if not module.__name__.startswith("deepaudit."):
            out[module.__name__] = {"module": module.__name__, "file": str(getattr(module, "__file__", ""))}
    return list(out.values())


class Worker:
    """One sealed worker process and its private folder (``base``: the jobs, a home, a log)."""

    def __init__(self, hidden: frozenset[Path] = frozenset()) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="deepaudit-seal-"))
        self.hidden, self.owner = hidden, os.getpid()  # a forked child starts its own worker
        # closed when this process exits: multiprocessing runs this in a pool's process too, where atexit never runs
        multiprocessing.util.Finalize(self, self.close, exitpriority=0)
        _share_caches(self.base / "home")
        (self.base / "tmp").mkdir()
        self.log = open(self.base / "worker.log", "w+b")  # noqa: SIM115 (lives as long as the worker)
        self.jobs = 0
        try:
            hide = [arg for path in sorted(hidden) for arg in ("--hide", str(path))] if namespace_prefix() else []
            self.process = subprocess.Popen([*namespace_prefix(), sys.executable, "-m", "deepaudit.game.worker", *hide],
                                            cwd=self.base, env=environment(self.base), stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=self.log, text=True)
        except OSError as exc:
            raise SealError(f"could not start the tools' worker: {exc}") from exc

    def alive(self) -> bool:
        return self.process.poll() is None

    def last_words(self) -> str:
        self.log.seek(0, os.SEEK_END)
        self.log.seek(max(0, self.log.tell() - 2000))
        return " | ".join(self.log.read().decode(errors="replace").strip().splitlines()[-3:])

    def run(self, job: Path) -> bool:
        """Have the worker answer ``job``; False if it died first."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(f"{job}\n")
            self.process.stdin.flush()
            return self.process.stdout.readline().strip() == "done"
        except OSError:
            return False

    def kill(self) -> None:
        """Stop the worker now, whatever it is doing (``worker()`` then starts another)."""
        self.process.kill()
        self.process.wait()

    def close(self) -> None:
        if os.getpid() != self.owner:  # inherited through a fork: the parent's to close
            return
        if self.alive():
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)


_worker: Worker | None = None


def worker(hidden: frozenset[Path]) -> Worker:
    """This process's worker, started on first need (again, if it died or must hide other
    folders) and closed at exit."""
    global _worker
    if _worker is None or _worker.owner != os.getpid() or not _worker.alive() or not hidden <= _worker.hidden:
        if _worker is not None:
            _worker.close()
        _worker = Worker(hidden)
    return _worker


def ask_sealed(family_name: str, folder: Path, asks: Sequence[Ask], questions: Mapping[str, Any], seed: int,
               budget: int, settings: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Each tool's reply (``deepaudit.game.worker.answer``), computed in the sealed worker; a
    tool the worker gave no reply for (it crashed) gets an error reply with the worker's last words."""
    sealed = worker(frozenset({Path(folder).resolve().parent, home().resolve(), *SCRATCH}))
    sealed.jobs += 1
    job = sealed.base / f"job-{sealed.jobs}"
    running = False
    try:
        expose(Path(folder), job / "public")
        write(job / "job.json", {"family": family_name, "seed": seed, "budget": budget, "settings": dict(settings),
                                 "questions": dict(questions), "plugins": _plugins([a[0] for a in asks]),
                                 "asks": [{"name": n, "overrides": dict(o), "roles": list(r)} for n, o, r in asks]})
        running = True
        finished = sealed.run(job)
        running = False
        _keep_built(sealed.base / "home")
        stopped = "gave no reply" if finished else f"stopped (exit {sealed.process.poll()})"
        for i in range(len(asks)):
            path = job / f"reply-{i}.json"
            try:
                yield read(path) if path.exists() else {
                    "status": "error", "error": f"the tools' worker {stopped} before answering: {sealed.last_words()}"}
            except WireError as exc:
                yield {"status": "error", "error": str(exc)}
    finally:
        if running:  # interrupted mid-job (Ctrl-C, a cancelled Ray task): the worker may still be on it, and would
            sealed.kill()  # answer the next job with this one's "done"; the next call starts a fresh worker
        shutil.rmtree(job, ignore_errors=True)
