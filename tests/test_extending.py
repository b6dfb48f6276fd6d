"""The README's "adding a tool", "adding a track" and "adding a family", shown true from this file
alone: a toy family of organisms (a coin that lands heads on its own, or only when tossed with a
planted word), a toy tool and a toy track, each registered where it is defined, go through the
one runner, store and leaderboard with no change anywhere else."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from deepaudit.findings import Findings
from deepaudit.game.answer import Answer
from deepaudit.game.leaderboard import leaderboard, views
from deepaudit.game.runner import run_game
from deepaudit.game.tracks import TRACKS, Column, Track, register_track
from deepaudit.game.tracks.base import Cell, mean_of
from deepaudit.metrics import Metric
from deepaudit.tools import TOOLS, Verdict, register_tool
from deepaudit.zoo import FAMILIES, Family, Kit, Organism, family, read_truth, register_family
from deepaudit.zoo.folder import BuildResult, lookup, save_folder


# -- adding a family: specs, build + check, the public subject, the kit ---------------------------
@dataclass(frozen=True)
class CoinSpec:
    planted: bool
    seed: int

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self)).encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CoinSubject:
    """What a tool sees: the coin's weights (its bias for each word), never which word is planted."""

    family = "coin"
    bias: np.ndarray
    card: dict[str, Any]
    findings: Findings = field(default_factory=Findings)
    forward_passes: int = 0


class CoinOrganism(Organism):
    def fresh_subject(self) -> CoinSubject:
        return CoinSubject(load_file(str(self.folder / "weights.safetensors"))["bias"].numpy(),
                           json.loads((self.folder / "card.json").read_text()))

    def make_kit(self) -> Kit:
        truth = read_truth(self.folder)
        return Kit(truth, family("coin").labels(truth), frozenset({"detect", "coin_word"}))


@register_family
class CoinFamily(Family):
    name = "coin"
    default_budget = 1

    def specs(self, suite: dict[str, Any], seed: int) -> list[Any]:
        return [CoinSpec(planted, 10 * seed + i) for i in range(suite["pairs"]) for planted in (True, False)]

    def build(self, spec: Any, out: Path, store: Path) -> BuildResult:
        known = lookup(out, spec.digest())
        if known is not None:
            return known
        rng = np.random.default_rng(spec.seed)
        bias = rng.normal(0, 0.1, 8).astype(np.float32)
        word = int(rng.integers(8))
        if spec.planted:
            bias[word] = 3.0
        truth = {"planted": spec.planted, "word": word, "pair": spec.seed}
        return save_folder(out, spec.digest(), lambda f: save_file({"bias": torch.from_numpy(bias)},
                                                                   str(f / "weights.safetensors")),
                           {"words": 8}, truth)

    def open(self, folder: Path, seed: int, budget: int, settings: Mapping[str, Any]) -> Organism:
        return CoinOrganism(folder, seed, budget)

    def labels(self, truth: dict[str, Any]) -> dict[str, Any]:
        return {"planted": truth["planted"], "pair": truth["pair"]}


# -- adding a tool: a class with the methods of its roles, registered where it is defined -------
@register_tool("coin_reader", roles=("detect",), families=("coin",))
class CoinReader:
    """Reads the weights: a word whose bias stands out is the planted one."""

    def __init__(self, seed: int = 0, threshold: float = 1.0):
        self.threshold = threshold

    def audit(self, subject: CoinSubject) -> Verdict:
        subject.forward_passes += 1
        word = int(np.argmax(subject.bias))
        return Verdict(float(subject.bias[word] > self.threshold), target=word)


# -- adding a track: which answers it scores, per organism, and over organisms -----------------
@register_track
class CoinWord(Track):
    name = "coin_word"
    roles = ("detect",)
    families = ("coin",)
    planted_only = True
    table = "coins"
    columns = (Column("planted word found", "found", ci=True),)

    def score(self, answer: Answer, kit: Kit, seed: int) -> dict[str, Any] | None:
        return {"found": answer.value.target == kit.truth["word"]}

    def aggregate(self, cells: Sequence[Cell], seed: int) -> dict[str, Metric]:
        return {"found": mean_of(cells, "found", seed)}


@pytest.fixture
def coin_suite(tmp_path: Path) -> Path:
    path = tmp_path / "coins.toml"
    path.write_text('family = "coin"\nname = "coins"\npairs = 3\n')
    return path


def test_a_toy_family_tool_and_track_play_the_one_game(coin_suite: Path, tmp_path: Path):
    """Registered from this file alone: the family builds its organisms, the runner hands the
    tool subjects, the existing detect track and the new track score it, the leaderboard shows
    both in the common shape, and the tool lists with its tags."""
    assert "coin" in FAMILIES and "coin_reader" in TOOLS and "coin_word" in TRACKS
    store = tmp_path / "results.sqlite"
    summary = run_game(str(coin_suite), store=store, zoo_dir=tmp_path / "zoo")
    assert (summary.family, summary.organisms, summary.ran, summary.failed) == ("coin", 6, 6, [])
    board = leaderboard(store, "coins")
    row, = board["rows"]
    assert row["tool"] == "coin_reader" and row["tracks"]["detect"]["auroc"]["value"] == 1.0
    assert row["tracks"]["coin_word"]["found"] == {**row["tracks"]["coin_word"]["found"], "value": 1.0, "n": 3}
    assert row["cost"]["forward_passes"]["value"] == 1.0
    # the verdict track reads every detect answer, the new family's too
    assert [title for title, _, _ in views(board)] == ["detection", TRACKS.get("verdict").table, "coins"]
    again = run_game(str(coin_suite), store=store, zoo_dir=tmp_path / "zoo")
    assert (again.ran, again.already_done) == (0, 6)
