"""Language-model support: the loader's safetensors cache, last-token residuals through the
capture hooks, the truth probes on synthetic data, the statement sets and the layer rule.
Only the tiny randomly initialised Llama model is used (the real SmolLM2 is a benchmark)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

pytest.importorskip("transformers")

from deepaudit.errors import DataError
from deepaudit.game.tracks.latent import validation_aurocs
from deepaudit.lm import last_token_residuals, layer_names, load_lm, load_statements, tiny_lm
from deepaudit.lm.loader import LMError, cache_key
from deepaudit.metrics import auroc_score
from deepaudit.tools.base import Probe
from deepaudit.tools.registry import make_tool, tool_spec, tool_specs

PROBES = [s.name for s in tool_specs(role="probe")]

PROMPTS = ["The city of Paris is in France.", "2 + 2 = 5.", "ok"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model saved as a Hugging Face folder, as a user's local model would be."""
    folder = tmp_path_factory.mktemp("tiny_llama")
    lm = tiny_lm(seed=0)
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


def test_loader_round_trip_gives_identical_logits_and_ties_weights(tiny_folder: Path, tmp_path: Path):
    original = tiny_lm(seed=0)
    first = load_lm(tiny_folder, cache_dir=tmp_path)
    cached = tmp_path / cache_key(tiny_folder) / "model.safetensors"
    assert cached.is_file()
    again = load_lm(tiny_folder, cache_dir=tmp_path)
    expected = original.logits(PROMPTS)
    assert torch.equal(first.logits(PROMPTS), expected)
    assert torch.equal(again.logits(PROMPTS), expected)
    with safe_open(str(cached), "pt") as fh:
        assert "lm_head.weight" not in set(fh.keys())  # the tied matrix is stored once
    model = again.model
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_loader_errors_name_the_missing_file(tmp_path: Path):
    with pytest.raises(LMError, match="no GGUF file"):
        load_lm(tmp_path / "absent.gguf", cache_dir=tmp_path)


def test_answer_margin_of_one_token_answers_equals_the_difference_of_log_probabilities():
    """The one-forward margin (logit difference at the last prompt position) must be the
    two-forward difference of answer log-probabilities, over batches of unequal prompt lengths."""
    from deepaudit.lm.scoring import answer_logprob, answer_margin, greedy_says, greedy_says_and_margin, margin_passes

    lm = tiny_lm(seed=1)
    prompts = PROMPTS * 3 + ["a much longer prompt than the others, to pad the batch"]
    slow = answer_logprob(lm, prompts, "T") - answer_logprob(lm, prompts, "F")
    np.testing.assert_allclose(answer_margin(lm, prompts, "T", "F", batch_size=4), slow, atol=1e-4)
    assert np.ptp(slow) > 0.01  # the prompts do differ
    assert margin_passes(lm, "T", "F") == 1 and margin_passes(lm, " T!", "F") == 2
    np.testing.assert_allclose(answer_margin(lm, prompts, " T!", "F"),  # several tokens: two passes
                               answer_logprob(lm, prompts, " T!") - answer_logprob(lm, prompts, "F"))
    for answer in ("T!", "ok"):  # greedy decoding and the margin read from one pass
        says, margin = greedy_says_and_margin(lm, prompts, answer, "T", "F", batch_size=4)
        np.testing.assert_array_equal(says, greedy_says(lm, prompts, answer))
        np.testing.assert_allclose(margin, slow, atol=1e-4)


def test_residuals_have_one_row_per_layer_and_prompt_and_ignore_padding():
    lm = tiny_lm(seed=1, layers=3)
    acts = last_token_residuals(lm, PROMPTS, batch_size=2)
    assert acts.shape == (3, len(PROMPTS), 32) and acts.dtype == np.float32
    assert layer_names(lm) == ["model.layers.0", "model.layers.1", "model.layers.2"]
    alone = np.stack([last_token_residuals(lm, [p])[:, 0] for p in PROMPTS], axis=1)
    np.testing.assert_allclose(acts, alone, atol=1e-4)  # left padding leaves each prompt's residual alone
    with torch.no_grad():
        hidden = lm.model(**lm.encode(PROMPTS[:1]), output_hidden_states=True).hidden_states
    np.testing.assert_allclose(acts[:2, 0], torch.stack(hidden[1:3])[:, 0, -1].numpy(), atol=1e-5)
    only = last_token_residuals(lm, PROMPTS, layers=[2])
    np.testing.assert_allclose(only[0], acts[2], atol=1e-6)


def _points(n: int, seed: int, d: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Linearly separable along a fixed direction, plus large nuisance variance elsewhere."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, d)) * np.linspace(0.5, 3.0, d)
    x[:, 0] += 3.0 * (2 * y - 1)
    return x, y


def _pairs(n: int, seed: int, d: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Contrast pairs: a shared per-statement vector, plus +-truth along one direction."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    base = rng.standard_normal((n, 1, d)) * 3.0
    truth = np.zeros((n, 2, d))
    truth[:, 0, 0], truth[:, 1, 0] = 2 * y - 1, 1 - 2 * y
    return base + 2.0 * truth + 0.3 * rng.standard_normal((n, 2, d)), y


@pytest.mark.parametrize("name", [n for n in PROBES if n != "probe_random"])
def test_each_probe_separates_held_out_synthetic_data(name: str):
    make = _pairs if getattr(tool_spec(name).cls, "pairs", False) else _points
    x, y = make(300, seed=0)
    xt, yt = make(300, seed=1)
    quick = {"restarts": 3, "epochs": 300} if name == "probe_ccs" else {}
    probe = make_tool(name, seed=0, **quick).fit(x, y)
    assert isinstance(probe, Probe)
    assert probe.direction.shape == (20,)
    assert auroc_score(yt, probe.score(xt)) > 0.9


def test_random_probe_is_not_systematically_right():
    x, y = _points(300, seed=0)
    aurocs = [auroc_score(y, make_tool("probe_random", seed=s).fit(x, y).score(x)) for s in range(30)]
    assert abs(np.mean(aurocs) - 0.5) < 0.1
    assert min(aurocs) < 0.5 < max(aurocs)


def test_ccs_finds_truth_without_labels_and_labels_fix_its_sign():
    x, y = _pairs(300, seed=2)
    xt, yt = _pairs(300, seed=3)
    unsupervised = make_tool("probe_ccs", seed=0, restarts=3, epochs=300).fit(x)
    auc = auroc_score(yt, unsupervised.score(xt))
    assert max(auc, 1 - auc) > 0.9
    oriented = make_tool("probe_ccs", seed=0, restarts=3, epochs=300).fit(x, y)
    assert auroc_score(yt, oriented.score(xt)) > 0.9


def test_probes_are_language_model_tools_only():
    assert all(tool_spec(name).families == ("lm",) for name in PROBES) and len(PROBES) == 6
    assert tool_spec("probe_random").kind == "baseline"


def test_layer_rule_picks_the_layer_that_carries_the_signal():
    x1, y = _points(200, seed=4)
    rng = np.random.default_rng(5)
    noise = rng.standard_normal((2, 200, 20))
    point = np.stack([noise[0], x1, noise[1]])
    scores = validation_aurocs(make_tool("probe_logreg"), point, y, seed=0)
    assert int(np.argmax(scores)) == 1 and len(scores) == 3 and scores[1] > 0.9 > max(scores[0], scores[2])


def test_statement_sets_load_and_sample_balanced():
    cities = load_statements("cities")
    assert len(cities.statements) == len(cities.labels) > 1000
    sample = cities.sample(40, seed=0)
    assert len(sample.labels) == 40 and sample.labels.sum() == 20
    assert set(sample.statements) <= set(cities.statements)


def test_missing_statement_sets_fail_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DEEPAUDIT_TRUTH_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="no statement sets"):
        load_statements("cities")


def test_cli_convert_caches_a_local_model(tiny_folder: Path, deepaudit_home: Path):
    from typer.testing import CliRunner

    from deepaudit.cli import app

    result = CliRunner().invoke(app, ["lm", "convert", "--model", str(tiny_folder)])
    assert result.exit_code == 0, result.output
    assert (deepaudit_home / "models" / cache_key(tiny_folder) / "model.safetensors").is_file()


def test_truth_benchmark_is_a_suite_scored_into_the_store(tmp_path: Path, deepaudit_home: Path):
    """The latent-knowledge benchmark is the truth-tiny suite of the one game: each probe gets a
    cell with its layer and AUROC (with CI over statements) on held-out cities and every other set."""
    from deepaudit.game.leaderboard import leaderboard
    from deepaudit.game.runner import run_game

    store = tmp_path / "results.sqlite"
    summary = run_game("truth-tiny", tools=["probe_logreg", "probe_pca"], store=store,
                       zoo_dir=deepaudit_home / "zoo")
    assert summary.failed == [] and summary.ran == 2
    rows = {row["tool"]: row["tracks"]["latent"] for row in leaderboard(store, "truth-tiny")["rows"]}
    expected = {"layer", "cities", "neg_cities", "sp_en_trans", "larger_than", "companies_true_false"}
    assert set(rows["probe_logreg"]) == expected and set(rows["probe_pca"]) == expected
    cities = rows["probe_logreg"]["cities"]
    assert cities["ci_low"] <= cities["value"] <= cities["ci_high"] and cities["n"] == 32
