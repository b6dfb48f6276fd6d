"""The auditor never sees the attacker's side: `tools` does not import `zoo`, and a Subject
carries nothing that leads back to the organism folder or its sealed truth."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

import deepaudit
from deepaudit.subject import load_subject
from deepaudit.zoo.folder import truth_path

TOOLS_DIR = Path(deepaudit.__file__).parent / "tools"
ZOO_IMPORT = re.compile(
    r"^\s*(?:from\s+(?:deepaudit\.zoo|\.\.zoo)\b"             # from deepaudit.zoo / ..zoo import x
    r"|from\s+(?:deepaudit|\.\.)\s+import\s+[^\n]*\bzoo\b"    # from deepaudit / .. import zoo
    r"|import\s+deepaudit\.zoo\b)"                            # import deepaudit.zoo
    r"|import_module\(\s*['\"]deepaudit\.zoo", re.M)


def test_tools_sources_never_import_zoo():
    """No file under src/deepaudit/tools imports deepaudit.zoo (absolute, relative or dynamic)."""
    files = sorted(TOOLS_DIR.rglob("*.py"))
    assert len(files) >= 5, f"tools package not found at {TOOLS_DIR}"
    offenders = [str(f) for f in files if ZOO_IMPORT.search(f.read_text())]
    assert offenders == []


def test_zoo_import_pattern_catches_imports():
    """The static check above really matches the import forms it claims to forbid."""
    for line in ("from deepaudit.zoo import read_truth", "import deepaudit.zoo.build",
                 "from ..zoo.build import TRUTH_FILE", "    from deepaudit.zoo import spec",
                 "from deepaudit import data, zoo", "from .. import zoo",
                 "importlib.import_module('deepaudit.zoo')"):
        assert ZOO_IMPORT.search(line), line
    assert not ZOO_IMPORT.search("from deepaudit.zoology import x")


def test_importing_tools_loads_no_zoo_or_game_module():
    """In a fresh interpreter, importing deepaudit.tools pulls in neither zoo nor game."""
    code = ("import sys, deepaudit.tools; "
            "bad = sorted(m for m in sys.modules if m.startswith(('deepaudit.zoo', 'deepaudit.game'))); "
            "print('LOADED', len([m for m in sys.modules if m.startswith('deepaudit.tools')])); "
            "print('BAD', bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LOADED 0" not in out and "LOADED" in out, out
    assert "BAD []" in out, out


def _strings(obj, seen: set[int]):
    """Every str / Path reachable from ``obj`` through containers, modules and deepaudit objects."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (str, Path)):
        yield str(obj)
    elif isinstance(obj, (torch.Tensor, np.ndarray, int, float, bool, type(None))):
        return
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k, seen)
            yield from _strings(v, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            yield from _strings(v, seen)
    elif isinstance(obj, types.MethodType):
        yield from _strings(obj.__self__, seen)
    elif isinstance(obj, nn.Module) or type(obj).__module__.startswith("deepaudit"):
        yield from _strings(vars(obj), seen)


def test_subject_holds_no_path_or_truth(smoke_zoo):
    """A Subject keeps no string leading to the organism folder or its truth file."""
    subject = load_subject(smoke_zoo.trojan)
    values = list(_strings(vars(subject), set())) + list(_strings(subject.card, set()))
    assert "mlp" in values and "digits" in values  # the walk does reach the card's strings
    folder = str(smoke_zoo.trojan)
    leaks = [v for v in values if folder in v or str(smoke_zoo.dir) in v or "truth" in v.lower()]
    assert leaks == []


def test_card_has_no_truth_fields(smoke_zoo):
    """The public card names nothing about what was planted."""
    card = load_subject(smoke_zoo.trojan).card
    forbidden = ("planted", "target", "implant", "trigger", "truth", "poison", "twin", "source", "decoy")
    assert [k for k in card if any(word in k.lower() for word in forbidden)] == []


def test_subject_loads_from_the_public_folder_alone(smoke_zoo, tmp_path):
    """The truth lives outside the public folder, and load_subject reads only the public files:
    a copy of the folder alone (no sealed truth beside it) loads."""
    assert truth_path(smoke_zoo.trojan).is_file() and not (smoke_zoo.trojan / "truth.json").exists()
    folder = tmp_path / smoke_zoo.trojan.name
    shutil.copytree(smoke_zoo.trojan, folder)
    assert not truth_path(folder).exists()
    subject = load_subject(folder, budget=16)
    assert subject.predict(subject.clean_x).shape == (16, 10)
