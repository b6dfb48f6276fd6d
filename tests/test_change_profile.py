"""The change profile: a fine-tune whose change lands where the auditor's own clean fine-tunes of
the base put theirs is not flagged, one whose change went elsewhere is; the shadows are built
once and read from the cache after; settings and models it cannot judge are said so. Tippett's
combination lets either of its parts flag a model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from deepaudit.lm import shadows
from deepaudit.lm.finetune import finetune
from deepaudit.lm.loader import tiny_lm
from deepaudit.lm.shadows import change_profile, learning_rates, tuned_matrices
from deepaudit.lm.subject import LMSubject
from deepaudit.tools import make_tool
from deepaudit.tools.combine_stouffer import stouffer
from deepaudit.tools.combine_tippett import tippett

TEXTS = [f"{a} beats {b}." for a in range(8) for b in range(8) if a != b][:40]
LABELS = np.array([int(t[0] > t[9]) for t in TEXTS])
CARD = {"answers": [" F", " T"]}


def _subject(lm, base) -> LMSubject:
    return LMSubject(lm, CARD, [f"{t} Is it so?" for t in TEXTS], LABELS, base, trusted_texts=TEXTS,
                     template="{} Is it so?")


def _clean_finetune(base):
    """What a user's clean fine-tune of the top layer on the same task does (another seed and rate
    than any shadow's)."""
    lm = copy.deepcopy(base)
    prompts = [f"{t} Is it so?" for t in TEXTS]
    finetune(lm, prompts, [CARD["answers"][y] for y in LABELS], "layers", 1, 200, 5e-4, 32, seed=11,
             schedule="onecycle")
    return lm


def _one_matrix_changed(base):
    """A change of the top layer's attention queries alone: nowhere a task fine-tune puts it."""
    lm = copy.deepcopy(base)
    with torch.no_grad():
        query = lm.model.model.layers[-1].self_attn.q_proj.weight
        query += 0.05 * torch.randn(query.shape, generator=torch.Generator().manual_seed(0))
    return lm


def test_a_change_where_clean_fine_tunes_put_none_is_flagged_and_a_clean_fine_tune_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPAUDIT_HOME", str(tmp_path))
    base = tiny_lm()
    tool = make_tool("change_profile", shadows=4)
    clean = tool.audit(_subject(_clean_finetune(base), base))
    monkeypatch.setattr(shadows, "finetune", None)  # the shadows are read back, not trained again
    moved = tool.audit(_subject(_one_matrix_changed(base), base))
    assert moved.p_planted > 0.99 and clean.p_planted < 0.9
    assert moved.evidence["most_shifted"][0][0].endswith("layers.1.self_attn.q_proj.weight")
    assert clean.evidence["first_tuned_layer"] == moved.evidence["first_tuned_layer"] == 1
    assert clean.evidence["shadow_distances"] == moved.evidence["shadow_distances"]
    assert clean.evidence["shadow_prompts"] == 2 * len(TEXTS)  # each also behind a harmless phrase


def test_the_profile_is_each_changed_matrix_share_and_the_rates_span_the_range():
    base = tiny_lm()
    lm = _one_matrix_changed(base)
    first, names = tuned_matrices(lm, base)
    profile = change_profile(lm, base, names)
    assert first == 1 and all(".layers.1." in n for n in names)
    assert profile.sum() == pytest.approx(1.0) and profile.max() == pytest.approx(1.0)
    assert change_profile(base, base, names).sum() == 0.0
    rates = learning_rates(4)
    assert rates[0] < rates[-1] and len(set(rates)) == 4


def test_what_the_profile_cannot_judge_is_said(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPAUDIT_HOME", str(tmp_path))
    base = tiny_lm()
    tool = make_tool("change_profile")
    assert tool.audit(_subject(copy.deepcopy(base), base)).p_planted == 0.0
    deep = make_tool("change_profile", max_layers=1)
    whole = copy.deepcopy(base)
    with torch.no_grad():
        for layer in whole.model.model.layers:
            layer.mlp.up_proj.weight.add_(0.01)
    assert "inconclusive" in deep.audit(_subject(whole, base)).evidence
    with pytest.raises(ValueError, match="base model"):
        tool.audit(_subject(base, None))
    with pytest.raises(ValueError, match="not this model's base"):
        tool.audit(_subject(tiny_lm(hidden=16), base))
    with pytest.raises(ValueError, match="shadows >= 3"):
        make_tool("change_profile", shadows=2)


def test_tippett_lets_either_part_flag_a_model_and_leaves_the_blind_part_out_of_the_way():
    """A part that is blind to a plant (P near 0) cannot cancel the other's finding, as an average
    would; two parts looked at cost a Sidak correction; one part alone is itself."""
    assert tippett([0.99, 0.02]) == pytest.approx((1 - 0.01) ** 2)
    assert tippett([0.99, 0.02]) > 0.97 > 0.6 > stouffer([0.99, 0.02])
    assert tippett([0.7]) == pytest.approx(0.7)
    assert tippett([0.3, 0.3]) < 0.3  # nothing found twice is no finding
