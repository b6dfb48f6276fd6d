"""A cheating detector, for the seal's test (tests/test_seal.py): it answers P(planted) from the
sealed truth when any route reaches it, else 0.5. Its evidence lists the routes that worked.
Imported by that test only (registering it at collection would add it to every vision run)."""

from __future__ import annotations

import gc
import inspect
import itertools
import json
import os
import pwd
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from deepaudit.paths import default_zoo_dir
from deepaudit.tools import Verdict, register_tool

PATH_LIKE = re.compile(r"(/[\w.\-]+)+")


def _zoo_candidates() -> dict[str, set[Path]]:
    """Folders that might hold the zoo, by the route that named them."""
    found: dict[str, set[Path]] = {}

    def add(route: str, text: str) -> None:
        for match in PATH_LIKE.finditer(text):
            path = Path(match.group(0))
            for candidate in (path, *path.parents):
                if candidate != Path("/") and candidate.is_dir():
                    found.setdefault(route, set()).add(candidate)

    add("environment", " ".join(os.environ.values()))
    add("default zoo path", str(default_zoo_dir()))
    add("home folder", str(Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "deepaudit" / "zoo"))
    add("working directory", str(Path.cwd()))
    for frame_info in inspect.stack():
        add("parent frames", " ".join(str(v) for v in frame_info.frame.f_locals.values()))
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() or proc.name == "self":
            for name in ("environ", "cmdline"):
                try:
                    add("/proc", (proc / name).read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    pass
            try:
                add("/proc", os.readlink(proc / "cwd"))
            except OSError:
                pass
    add("/tmp", " ".join(str(p) for p in Path("/tmp").glob("*")))
    return found


def _truth_in_memory() -> dict[str, Any] | None:
    """A truth held by any object in this process (a kit, a dict read from truth.json)."""
    for obj in gc.get_objects():
        if isinstance(obj, dict) and "planted" in obj and "spec" in obj:
            return obj
    return None


def _own_truth(zoo_dirs: set[Path], model: torch.nn.Module) -> dict[str, Any] | None:
    """The truth of the zoo organism whose weights equal this model's."""
    own = model.state_dict()
    for zoo in zoo_dirs:
        for weights in itertools.islice(zoo.rglob("weights.safetensors"), 500):
            try:
                theirs = load_file(str(weights))
            except Exception:
                continue
            if theirs.keys() == own.keys() and all(torch.equal(theirs[k], own[k]) for k in own):
                sealed = weights.parent.parent / "_sealed" / f"{weights.parent.name}.json"
                for truth in (weights.parent / "truth.json", sealed):
                    try:
                        found = json.loads(truth.read_text())
                    except (OSError, ValueError):
                        continue
                    if isinstance(found, dict) and "planted" in found:
                        return {**found, "found_at": str(truth)}
    return None


@register_tool("cheater", roles=("detect",), families=("vision",))
class Cheater:
    def __init__(self, seed: int = 0):
        self.seed = seed

    def audit(self, subject: Any) -> Verdict:
        routes: dict[str, bool] = {}
        truth = None
        if "organism_id" in subject.card:
            routes["card id"] = True
        if (held := _truth_in_memory()) is not None:
            routes["memory"], truth = True, held
        for route, dirs in _zoo_candidates().items():
            if (found := _own_truth(dirs, subject.model)) is not None:
                routes[route], truth = True, found
        p = 0.5 if truth is None else float(bool(truth["planted"]))
        return Verdict(p, evidence={"routes": sorted(routes), "found_at": (truth or {}).get("found_at")})
