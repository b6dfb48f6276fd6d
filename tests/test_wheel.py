"""Installed, not only editable (issue 17): a wheel built from the repository carries every file of
the package (the suites' TOML files included), and installed into a fresh virtual environment its
CLI lists every built-in suite from a folder outside the repository. Nothing is downloaded: the
wheel is built with this environment's setuptools, and the new environment borrows this one's
dependencies (torch, typer, ...) but not its editable install of deepaudit."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "deepaudit"
# A few suites of each family that must be listed whatever else is added or renamed.
REQUIRED = {"lm": {"lm", "lm-tiny", "truth"}, "vision": {"smoke", "quick", "standard"}, "training": {"grok-tiny"}}

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("setuptools") is None or importlib.util.find_spec("pip") is None,
    reason="cannot build a wheel offline: this environment lacks pip or setuptools (the build backend)")


def _package_files(folder: Path) -> set[str]:
    """Paths (relative to ``folder``'s parent, as in a wheel) of every file of the package in
    ``folder``, bytecode caches aside."""
    return {p.relative_to(folder.parent).as_posix() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``cmd`` and return its stdout; a failure shows its output in the assertion."""
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean copy of the checkout's top-level files and ``src/`` (as a fresh clone has them): a build
    in the checkout itself would write ``build/`` there, and would see a stale ``*.egg-info``."""
    dst = tmp_path_factory.mktemp("source")
    for path in ROOT.iterdir():
        if path.is_file():
            shutil.copy2(path, dst / path.name)
    shutil.copytree(ROOT / "src", dst / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return dst


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel . --no-deps`` of the checkout, built offline with this environment's setuptools."""
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index",
          "--quiet", "--wheel-dir", str(dist)], cwd=source)
    wheels = list(dist.glob("deepaudit-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fresh virtual environment (from the base interpreter, so not nested in this one) with the wheel
    installed: its ``site-packages`` and ``scripts`` folders. This environment's site-packages are
    listed in a ``.pth`` file as plain paths, so the dependencies are found but the ``.pth`` files
    there, among them the checkout's editable install, are not processed. (``--system-site-packages``
    would not do: it adds the base interpreter's packages, not those of a virtual environment running
    the tests.)"""
    root = tmp_path_factory.mktemp("venv")
    base = getattr(sys, "_base_executable", None) or sys.executable
    _run([base, "-m", "venv", "--without-pip", str(root)], cwd=root)
    python = Path(sysconfig.get_path("scripts", vars={"base": str(root)})) / ("python.exe" if os.name == "nt" else "python")
    paths = json.loads(_run([str(python), "-c", "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))"],
                            cwd=root))
    purelib, scripts = Path(paths["purelib"]), Path(paths["scripts"])
    deps = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    (purelib / "_deepaudit_test_dependencies.pth").write_text("\n".join(p for p in deps if Path(p).is_dir()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet",
          str(wheel)], cwd=root)
    return {"python": python, "purelib": purelib, "scripts": scripts}


def _env(home: Path) -> dict[str, str]:
    """The environment for a command in the new venv: nothing put on the path by hand, a private home."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "DEEPAUDIT_HOME": str(home)}


def test_wheel_carries_every_package_file(wheel: Path) -> None:
    """Every file under src/deepaudit, the suites and any other data file, is in the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("deepaudit/")}
    expected = _package_files(PACKAGE)
    data = {name for name in expected if not name.endswith(".py")}
    assert any(name.endswith(".toml") for name in data), data
    assert data - shipped == set(), f"data files missing from the wheel: {sorted(data - shipped)}"
    assert expected - shipped == set(), f"files missing from the wheel: {sorted(expected - shipped)}"


def test_sdist_carries_every_package_file(source: Path, tmp_path: Path) -> None:
    """The source distribution (what ``python -m build`` and an index's ``pip install`` build the wheel
    from) carries every file under src/deepaudit too."""
    out = tmp_path / "sdist"
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"
    name = _run([sys.executable, "-c", code], cwd=source).strip().splitlines()[-1]
    with tarfile.open(out / name) as archive:
        top = name.removesuffix(".tar.gz")
        shipped = {m.name.removeprefix(f"{top}/src/") for m in archive.getmembers() if m.isfile()}
    missing = _package_files(PACKAGE) - shipped
    assert missing == set(), f"files missing from the sdist: {sorted(missing)}"


def test_installed_wheel_lists_every_suite(venv: dict[str, Path], tmp_path: Path) -> None:
    """From a folder outside the repository, the installed package (not the checkout) imports, and
    ``deepaudit zoo list`` lists every built-in suite of every family, language-model suites included."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(tmp_path / "home")
    where = _run([str(venv["python"]), "-c", "import deepaudit; print(deepaudit.__file__)"], cwd=elsewhere, env=env)
    assert Path(where.strip()).resolve().is_relative_to(venv["purelib"].resolve()), where
    listing = _run([str(venv["scripts"] / "deepaudit"), "zoo", "list"], cwd=elsewhere, env=env)
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in listing.splitlines() if line.startswith("│")]
    listed = {(row[0], row[1]) for row in rows if row[0]}
    in_checkout = {(p.stem, p.parent.parent.name) for p in PACKAGE.glob("zoo/*/suites/*.toml")}
    assert listed == in_checkout, f"listed {sorted(listed)}, the checkout has {sorted(in_checkout)}"
    for fam, suites in REQUIRED.items():
        assert {(suite, fam) for suite in suites} <= listed, (fam, sorted(listed))
