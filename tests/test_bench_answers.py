"""Benchmarks that read stored answers: they take a tool's answers at its default parameters only,
end with a clear error (exit 2) when there are none, and `contrast_references` reads each
reference's gap back from `nc_contrast`'s class scores."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from deepaudit.bench.common import tool_answers
from deepaudit.game.store import Cell, CellKey, Store
from deepaudit.tools.registry import tool_spec

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def benchmark(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def contrast_cell(organism: str, planted: bool, rehead: list[float], student: list[float],
                  params: str | None = None) -> Cell:
    spec = tool_spec("nc_contrast")
    digest = params or spec.digest(spec.params())
    return Cell(CellKey("standard", 7, organism, "nc_contrast", digest, "detect", 256), "done",
                answer={"p_planted": 0.5, "evidence": {"log_mask_size": {"rehead": rehead, "student": student}}},
                scores={"p_planted": 0.5},
                labels={"planted": planted, "dataset": "mnist1d", "arch": "cnn", "family": "vision"})


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """Two clean and two planted answers at the default parameters, one at other parameters."""
    path = tmp_path / "results.sqlite"
    flat = [3.0] * 5
    db = Store(path)
    db.put([
        contrast_cell("clean-a", False, flat, [3.0, 3.0, 3.0, 2.0, 3.0]),  # the student's class 3 small
        contrast_cell("clean-b", False, flat, [3.0, 3.0, 3.0, 2.6, 3.0]),
        contrast_cell("planted-a", True, [3.0, 1.0, 3.0, 3.0, 3.0], [3.0, 1.0, 3.0, 3.0, 3.0]),
        contrast_cell("planted-b", True, [3.0, 3.0, 3.0, 3.0, 1.5], [3.0, 3.0, 3.0, 3.0, 1.5]),
        contrast_cell("other-params", False, flat, [0.0] * 5, params="0" * 12),
    ])
    db.close()
    return path


def test_tool_answers_are_the_default_parameters_only(store: Path):
    cells = tool_answers(store, "standard", 7, "nc_contrast")
    assert sorted(c["organism_id"] for c in cells) == ["clean-a", "clean-b", "planted-a", "planted-b"]


@pytest.mark.parametrize("tool, seed", [("nc_contrast", 8), ("no_such_tool", 7), ("neural_cleanse", 7)])
def test_no_answers_is_a_clear_exit(store: Path, tool: str, seed: int, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_:
        tool_answers(store, "standard", seed, tool)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_contrast_references_reads_each_references_gap(store: Path):
    rows = benchmark("contrast_references").rows(tool_answers(store, "standard", 7, "nc_contrast"))
    by_reference = {reference: (clean, planted, median, auroc, commonest)
                    for _, reference, clean, planted, median, auroc, commonest in rows}
    assert set(by_reference) == {"rehead", "student", "mean (nc_contrast)"}
    assert by_reference["rehead"][2] == 0.0  # flat classes: no gap
    assert by_reference["student"][2] == pytest.approx((1.0 + 0.4) / 2)
    assert by_reference["student"][4] == "3 (2/2)"
    assert by_reference["student"][3].startswith("1.00")  # planted gaps 2.0 and 1.5 above clean 1.0 and 0.4
    assert by_reference["mean (nc_contrast)"][:2] == (2, 2)


def detect_cell(seed: int, organism: str, planted: bool, p: float, version: int = 1, cpu_s: float = 2.0,
                arch: str = "cnn", **params: object) -> Cell:
    spec = dataclasses.replace(tool_spec("nc_contrast"), version=version)
    return Cell(CellKey("standard", seed, organism, "nc_contrast", spec.digest(spec.params(**params)), "detect", 256),
                "done",
                answer={"p_planted": p, "evidence": {}}, scores={"p_planted": p}, cpu_s=cpu_s,
                labels={"planted": planted, "dataset": "digits", "arch": arch, "mapping": "all_to_one" if planted else None,
                        "family": "vision"})


def test_verdict_draws_reads_each_draw_from_every_store_and_pairs_versions(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]):
    """Seed 1 in one store, seed 2 in another; version 2 ranks seed 1 perfectly where version 1
    ranked it backwards, so the paired difference is +1 there and 0 on seed 2."""
    first, second = Store(tmp_path / "a.sqlite"), Store(tmp_path / "b.sqlite")
    probs = {"c1": (False, 0.1), "c2": (False, 0.3), "p1": (True, 0.6), "p2": (True, 0.9)}
    first.put([detect_cell(1, name, planted, p, version=2) for name, (planted, p) in probs.items()]
              + [detect_cell(1, name, planted, 1 - p) for name, (planted, p) in probs.items()])
    second.put([detect_cell(2, name, planted, p, version=version) for name, (planted, p) in probs.items()
                for version in (1, 2)])
    first.close(), second.close()
    draws = benchmark("verdict_draws")
    argv = ["verdict_draws.py", "--seed", "1", "2", "--version", "2", "--against", "1", "--thresholds", "0.5", "0.2",
            "--store", str(tmp_path / "a.sqlite"), "--store", str(tmp_path / "b.sqlite"), "--markdown"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        draws.main()
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert len(rows) == 2 and all("| 2 / 2 | 1.000" in line for line in rows)
    assert all("| 0.0% (0) | 100.0% | 50% | 0% |" in line for line in rows)  # c1 cleared, c2 inconclusive
    assert "seed 1: AUROC minus version 1's +1.000" in out and "seed 2: AUROC minus version 1's +0.000" in out


def earlier_cell(organism: str, planted: bool, p: float, lacking: str | None, **params: object) -> Cell:
    """A version-1 detect cell keyed by ``params``, and without the parameter ``lacking``."""
    cell = detect_cell(1, organism, planted, p, **params)
    if lacking is None:
        return cell
    spec = dataclasses.replace(tool_spec("nc_contrast"), version=1)
    digest = spec.digest({name: value for name, value in spec.params(**params).items() if name != lacking})
    return dataclasses.replace(cell, key=dataclasses.replace(cell.key, params=digest))


@pytest.mark.parametrize("params, lacking, option, good, bad", [
    ({"slope": 1.5}, None, "--against-param", "slope=1.5", "slopes=1.5"),  # another default
    ({}, "pair_steps", "--against-without", "pair_steps", "pairs"),  # a parameter it did not have
])
def test_verdict_draws_pairs_an_earlier_version_keyed_by_other_parameters(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], params, lacking, option, good, bad):
    """Version 1's answers are keyed by its own parameters (another default slope, or no
    ``pair_steps``): only the option that says so finds them; a parameter the tool lacks is a
    clear exit."""
    store = Store(tmp_path / "a.sqlite")
    probs = {"c1": (False, 0.1), "c2": (False, 0.3), "p1": (True, 0.6), "p2": (True, 0.9)}
    store.put([detect_cell(1, name, planted, p, version=2) for name, (planted, p) in probs.items()]
              + [earlier_cell(name, planted, 1 - p, lacking, **params) for name, (planted, p) in probs.items()])
    store.close()
    argv = ["verdict_draws.py", "--seed", "1", "--version", "2", "--against", "1", "--store", str(tmp_path / "a.sqlite")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        benchmark("verdict_draws").main()
        assert "seed 1: no answers of version 1" in capsys.readouterr().out
        patch.setattr(sys, "argv", argv + [option, good])
        benchmark("verdict_draws").main()
        assert "seed 1: AUROC minus version 1's +1.000" in capsys.readouterr().out
        patch.setattr(sys, "argv", argv + [option, bad])
        with pytest.raises(SystemExit) as exit_:
            benchmark("verdict_draws").main()
    assert exit_.value.code == 2 and f"no parameters ['{bad.split('=')[0]}']" in capsys.readouterr().err


def test_verdict_draws_without_answers_is_a_clear_exit(store: Path, capsys: pytest.CaptureFixture[str]):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["verdict_draws.py", "--seed", "3", "--store", str(store)])
        with pytest.raises(SystemExit) as exit_:
            benchmark("verdict_draws").main()
    assert exit_.value.code == 2 and "seed(s) [3]" in capsys.readouterr().err


def test_verdict_thresholds_by_card_chooses_each_cards_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Two cards whose clean models sit at different levels: each gets its own suspect threshold
    from its own clean models (a family threshold would sit among the higher card's), and the
    low card's planted models, below the high card's clean ones, are suspected by it."""
    store = Store(tmp_path / "results.sqlite")
    version = tool_spec("nc_contrast").version
    low = [("c", False, p) for p in (0.10, 0.11, 0.12, 0.13)] + [("p", True, p) for p in (0.30, 0.31)]
    high = [("c", False, p) for p in (0.50, 0.51, 0.52, 0.53)] + [("p", True, p) for p in (0.80, 0.81)]
    store.put([detect_cell(1, f"{arch}-{name}{i}", planted, p, version=version, arch=arch)
               for arch, rows in (("cnn", low), ("mlp", high)) for i, (name, planted, p) in enumerate(rows)])
    store.close()
    argv = ["verdict_thresholds.py", "--seed", "1", "--tool", "nc_contrast", "--by-card", "--clean-suspected", "0.25",
            "--store", str(tmp_path / "results.sqlite")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        benchmark("verdict_thresholds").main()
    out = capsys.readouterr().out
    own = {line.split()[2].rstrip(":"): float(line.split(">= ")[1].split(",")[0]) for line in out.splitlines()
           if line.strip().startswith("card digits")}
    assert 0.12 < own["cnn"] < 0.13 and 0.52 < own["mlp"] < 0.53  # one clean model of each card at or above
    assert "clean    (  8): backdoor suspected 25%" in out and "planted  (  4): backdoor suspected 100%" in out


def test_rank_mean_joins_two_tools_by_organism_and_compares_their_mean_rank(tmp_path: Path):
    """nc_contrast ranks the four organisms perfectly, abs at chance: each
    tool's AUROC, the mean rank's, and its difference from the better tool come out per card;
    answers at another parameter are read only when asked for, and no shared organism is an exit."""
    store = Store(tmp_path / "a.sqlite")
    probs = {"c1": (False, 0.1), "c2": (False, 0.3), "p1": (True, 0.6), "p2": (True, 0.9)}
    spec = tool_spec("abs")

    def abs_cell(name: str, planted: bool, p: float, **params: object) -> Cell:
        return Cell(CellKey("standard", 1, name, "abs", spec.digest(spec.params(**params)), "detect", 256), "done",
                    answer={"p_planted": p, "evidence": {}}, scores={"p_planted": p},
                    labels={"planted": planted, "dataset": "digits", "arch": "cnn", "family": "vision"})

    version = tool_spec("nc_contrast").version
    store.put([detect_cell(1, name, planted, p, version=version) for name, (planted, p) in probs.items()]
              + [abs_cell(name, planted, {"c1": 0.2, "c2": 0.9, "p1": 0.8, "p2": 0.3}[name])
                 for name, (planted, _) in probs.items()]
              + [abs_cell("p1", True, 0.99, logit_weight=0.0)])
    store.close()
    module = benchmark("rank_mean")
    planted, cards = np.array([0, 0, 1, 1]), np.array(["digits,cnn"] * 4)
    rows = module.rows(planted, cards, [np.array([0.1, 0.3, 0.6, 0.9]), np.array([0.2, 0.9, 0.8, 0.3])])
    assert [row[0] for row in rows] == ["all", "digits,cnn"]
    _, clean, found, singles, both, (low, high) = rows[1]
    assert (clean, found) == (2, 2) and singles == [1.0, 0.5]
    assert both == pytest.approx(0.75)  # rank sums 2, 6 (clean) and 6, 6 (planted): two ties
    assert low <= 0.0
    with pytest.raises(SystemExit) as exit_:
        module.main(["--seed", "2", "--tool", "nc_contrast", "--tool", "abs", "--store", str(tmp_path / "a.sqlite")])
    assert exit_.value.code == 2
    module.main(["--seed", "1", "--tool", "nc_contrast", "--tool", "abs", "--store", str(tmp_path / "a.sqlite"),
                 "--param", "abs.logit_weight=0"])  # found: 0 is the float 0.0 the cell was keyed by (else exit 2)
