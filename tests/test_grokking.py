"""Training-run organisms and their tracks, at a tiny size (p = 13, 150 steps): the transformer's
hook points, the Fourier tools on models whose algorithm is known by construction, the
organism folders, public measures and monitor runs the builder writes, and the forecast and
reverse tracks through the one runner (``game run --suite grok-tiny``)."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from deepaudit.cli import app
from deepaudit.game.leaderboard import leaderboard
from deepaudit.game.roles import ask_here
from deepaudit.game.store import Store
from deepaudit.game.tracks import TRACKS
from deepaudit.internals import run_with_cache
from deepaudit.internals.fourier import (
    all_pairs,
    fourier_basis,
    frequency_norms,
    gini,
    key_frequencies,
    restricted_and_excluded_loss,
)
from deepaudit.models.transformer import OneLayerTransformer
from deepaudit.monitor import MonitorStore
from deepaudit.subject import TrainingSubject, load_model
from deepaudit.tools.fourier_program import FourierReverseEngineer
from deepaudit.tools.grok_forecast import FourierSparsityForecaster, WeightNormForecaster
from deepaudit.zoo import build_suite, read_truth
from deepaudit.zoo.training.build import HIDDEN, TRAINING_FILE, build_grok_organism
from deepaudit.zoo.training.family import TrainingKit
from deepaudit.zoo.training.spec import PRESETS, grok_specs

P = 13


class Clock(nn.Module):
    """Nanda et al.'s algorithm written out: logits(c) = sum_k amp_k cos(w_k (a + b - c)), with an
    embedding made of the key frequencies' cos and sin (plus a little noise)."""

    def __init__(self, p: int, keys: dict[int, float], noise: float = 0.0):
        super().__init__()
        self.p, self.keys = p, keys
        x = torch.arange(p, dtype=torch.float32)
        cols = [f(2 * math.pi * k * x / p) for k in keys for f in (torch.cos, torch.sin)]
        weight = torch.zeros(p + 1, len(cols))
        weight[:p] = torch.stack(cols, 1) + noise * torch.randn(p, len(cols), generator=torch.Generator().manual_seed(0))
        self.embed = nn.Embedding.from_pretrained(weight)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        s = (tokens[:, 0:1] + tokens[:, 1:2] - torch.arange(self.p)[None, :]).float()
        return sum(amp * torch.cos(2 * math.pi * k * s / self.p) for k, amp in self.keys.items())


def test_transformer_exposes_named_hook_points():
    model = OneLayerTransformer((3,), P, d_model=16, n_heads=2, d_mlp=32)
    logits, cache = run_with_cache(model, all_pairs(P), ["embed", "attn.pattern", "mlp_act", "resid_final"])
    assert logits.shape == (P * P, P)
    assert cache["attn.pattern"].shape == (P * P, 2, 3, 3)
    assert torch.allclose(cache["attn.pattern"].sum(-1), torch.ones(P * P, 2, 3))
    assert cache["attn.pattern"][:, :, 0, 1:].abs().max() == 0  # causal: the first token sees only itself
    assert cache["mlp_act"].shape == (P * P, 32) and cache["mlp_act"].min() >= 0


def test_fourier_basis_and_key_frequencies():
    basis = fourier_basis(P)
    assert torch.allclose(basis @ basis.T, torch.eye(P), atol=1e-5)
    clock = Clock(P, {2: 1.0, 5: 0.7}, noise=0.01)
    norms = frequency_norms(clock.embed.weight[:P])
    assert key_frequencies(norms) == [2, 5]
    assert gini(norms) > 0.6 and gini(np.ones(6)) == pytest.approx(0.0)


def test_restricted_and_excluded_loss_split_the_algorithm():
    """A clock's logits are all key-frequency: restricted loss is low, and with the key part
    removed nothing is left (excluded loss = log p, chance)."""
    clock = Clock(P, {3: 6.0, 4: 6.0})
    logits = clock(all_pairs(P))
    train = torch.zeros(P * P, dtype=torch.bool)
    train[::3] = True
    restricted, excluded = restricted_and_excluded_loss(logits, P, [3, 4], train)
    assert restricted < 0.1
    assert excluded == pytest.approx(math.log(P), abs=1e-3)
    wrong, _ = restricted_and_excluded_loss(logits, P, [1], train)
    assert wrong > 1.0


class ClockKit:
    """What the reverse track reads from a training kit, for a model built by hand."""

    def __init__(self, model: nn.Module, keys: list[int]):
        self.original, self.key_frequencies, self.modulus = model, keys, P

    def all_inputs(self):
        return TrainingKit.all_inputs(self)


def score_program(program, model: nn.Module, keys: list[int]) -> dict:
    """The reverse role asked of a tool that returns ``program``, scored by the reverse track."""
    kit = ClockKit(model, keys)
    tool = type("Given", (), {"reverse": lambda self, model, card: program})()
    subject = type("Subject", (), {"model": model, "card": {}})()
    return TRACKS.get("reverse").score(ask_here("reverse", tool, subject, kit, 0), kit, 0)


def test_reverse_engineer_recovers_a_clock_and_rejects_a_random_model():
    clock = Clock(P, {2: 1.0, 5: 0.8})
    card = {"modulus": P}
    program = FourierReverseEngineer().reverse(clock, card)
    assert sorted(program.frequencies) == [2, 5]
    scores = score_program(program, clock, [2, 5])
    assert scores["agreement"] == 1.0 and scores["program_accuracy"] == 1.0 and scores["frequency_jaccard"] == 1.0
    torch.manual_seed(0)
    random_model = OneLayerTransformer((3,), P, d_model=16, n_heads=2, d_mlp=32).eval()
    scores = score_program(FourierReverseEngineer().reverse(random_model, card), random_model, [2, 5])
    assert scores["agreement"] < 0.5


def _series(gini_rise_at: int | None, test_drop_at: int | None, steps: int = 40) -> dict:
    t = np.arange(steps) * 10
    g = np.full(steps, 0.2) if gini_rise_at is None else np.where(t >= gini_rise_at, 0.2 + 0.01 * (t - gini_rise_at), 0.2)
    falls = np.where(t < test_drop_at, 10.0, 0.1) if test_drop_at is not None else 10.0
    test_loss = np.where(t < 20, 3.0, falls)
    test_acc = np.zeros(steps) if test_drop_at is None else (t >= test_drop_at + 20).astype(float)
    return {"train_acc": (t, np.where(t >= 20, 1.0, 0.5)), "fourier/embed_gini": (t, g),
            "weight_norm/total": (t, np.full(steps, 5.0)), "test_loss": (t, test_loss), "test_acc": (t, test_acc),
            "posthoc/key_share": (t, np.ones(steps))}


def _forecast(forecaster, series: dict) -> dict:
    """Ask a forecaster along a run whose public measures are ``series`` minus the hidden ones,
    and score its alarm against the whole run."""
    kit = type("RunKit", (), {"series": series, "jump_step": TrainingKit.jump_step,
                              "baseline_alarm": TrainingKit.baseline_alarm})()
    public = {name: values for name, values in series.items() if not name.startswith(HIDDEN)}
    subject = TrainingSubject(nn.Linear(1, 1), {}, public)
    answer = ask_here("forecast", forecaster, subject, kit, 0)
    return TRACKS.get("forecast").score(answer, kit, 0)


class Peeker(FourierSparsityForecaster):
    """Records every measure it was shown."""

    seen: set[str] = set()

    def forecast(self, series):
        Peeker.seen |= set(series)
        return super().forecast(series)


def test_forecast_scoring():
    """A forecaster that sees the Fourier sparsity rise 150 steps before the test loss falls
    gains that lead; on a run that never generalises and whose sparsity never rises it stays
    quiet; and it never sees test or post-hoc measures."""
    grok = _series(gini_rise_at=100, test_drop_at=250)
    row = _forecast(FourierSparsityForecaster(rise=0.1), grok)
    assert (row["jump_step"], row["baseline_alarm"]) == (270, 250)
    assert row["generalises"] and row["alarm_step"] == 110 and row["lead_steps"] == 140
    quiet = _forecast(FourierSparsityForecaster(), _series(None, None))
    assert quiet["generalises"] is False and quiet["false_alarm"] is False
    assert _forecast(WeightNormForecaster(), grok)["alarm_step"] is None  # flat norm: no alarm
    _forecast(Peeker(), grok)
    assert Peeker.seen == {"train_acc", "fourier/embed_gini", "weight_norm/total"}


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("grok")
    return out, build_suite("grok-tiny", out=out, store=out / "results.sqlite")


def test_tiny_suite_builds_organisms_with_truth_and_monitor_runs(tiny_suite):
    out, manifest = tiny_suite
    roles = {oid: read_truth(out / oid)["role"] for oid in manifest["organisms"]}
    assert sorted(roles.values()) == ["big_data", "grok", "no_wd"]
    store = MonitorStore(out / "results.sqlite")
    for oid in manifest["organisms"]:
        card = json.loads((out / oid / "card.json").read_text())
        truth = read_truth(out / oid)
        assert "key_frequencies" not in card and "phases" not in card and "role" not in card
        public = json.loads((out / oid / TRAINING_FILE).read_text())
        assert "train_acc" in public and not [m for m in public if m.startswith(HIDDEN)]
        if truth["role"] != "big_data":  # 150 steps fit 30% of the pairs, not 80%
            assert truth["final_train_acc"] >= 0.95
        assert truth["key_frequencies"] and all(1 <= k <= P // 2 for k in truth["key_frequencies"])
        model = load_model(out / oid)  # the public path rebuilds it from the card
        assert model(all_pairs(P)[:5]).shape == (5, P)
        series = store.series(truth["monitor_run"])
        for name in ("train_loss", "test_acc", "weight_norm/total", "grad_norm/mlp_in", "update/embed",
                     "act/mlp_act/rank", "probe/sum_mod_p", "fourier/embed_gini", "posthoc/restricted_loss",
                     "posthoc/excluded_loss"):
            assert name in series and name in truth["series"], name
        assert len(series["train_loss"][0]) == PRESETS["tiny"].steps // PRESETS["tiny"].eval_every + 1
    by_role = {roles[oid]: read_truth(out / oid) for oid in manifest["organisms"]}
    assert by_role["no_wd"]["spec"]["weight_decay"] == 0.0 and by_role["big_data"]["spec"]["train_frac"] >= 0.6


def test_grok_build_is_deterministic(tiny_suite, tmp_path):
    out, manifest = tiny_suite
    spec = grok_specs("tiny")[0]
    again = build_grok_organism(spec, tmp_path, tmp_path / "r.sqlite")
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    assert again.organism_id in manifest["organisms"]
    assert digest(again.path / "weights.safetensors") == digest(out / again.organism_id / "weights.safetensors")
    assert build_grok_organism(spec, tmp_path, tmp_path / "r.sqlite").status == "cached"


def test_the_game_scores_the_training_tracks(tiny_suite):
    """`game run --suite grok-tiny` scores the reverse-engineer and the forecasters on every run."""
    out, manifest = tiny_suite
    store = out / "results.sqlite"
    result = CliRunner().invoke(app, ["game", "run", "--suite", "grok-tiny", "--zoo", str(out), "--store", str(store),
                                      "--jobs", "1"])
    assert result.exit_code == 0, result.output
    cells = list(Store(store).cells(suite="grok-tiny"))
    assert {(c["tool"], c["track"]) for c in cells} == {("fourier_program", "reverse"), ("fourier_sparsity", "forecast"),
                                                        ("weight_norm", "forecast")}
    assert len(cells) == 3 * len(manifest["organisms"])
    for cell in cells:
        if cell["track"] == "reverse":
            model = load_model(out / cell["organism_id"]).eval()
            with torch.no_grad():
                right = (model(all_pairs(P)).argmax(1) == (all_pairs(P)[:, 0] + all_pairs(P)[:, 1]) % P).float().mean()
            assert cell["scores"]["model_accuracy"] == pytest.approx(float(right))
            assert 0.0 <= cell["scores"]["agreement"] <= 1.0
    rows = {row["tool"]: row for row in leaderboard(store, "grok-tiny")["rows"]}
    assert "agreement" in rows["fourier_program"]["tracks"]["reverse"]
