"""Fact editing on the tiny randomly initialised Llama (a character tokenizer, so one-character
targets): ROME's rank-one edit, the fine-tuning baseline, the scores, the built-in facts and
the errors for requests that do not fit the model. The real SmolLM2 run is a benchmark.

The random model's output is nearly flat (its logits stay within about ±0.7) and its attention
moves little between positions, so the efficacy tests edit a prompt that ends on the subject,
with ROME's weight decay off and a wide clamp on the value shift; the real model needs neither."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

pytest.importorskip("transformers")

from deepaudit.errors import DataError
from deepaudit.game.roles import ask_here
from deepaudit.game.tracks import TRACKS
from deepaudit.lm import tiny_lm
from deepaudit.lm.edit_score import score_edit
from deepaudit.lm.facts import RELATIONS, EditError, EditRequest, Fact, edit_requests, greedy_answers, load_facts
from deepaudit.tools import make_tool
from deepaudit.tools.edit_finetune import FineTuneEdit
from deepaudit.tools.edit_rome import DOWN_PROJ, Rome

TEXTS = ["The city of Paris is in France.", "Two plus two is four.", "Bern is the capital of Switzerland.",
         "The river flows to the sea.", "Madrid is a city in Spain.", "Cats and dogs are animals."] * 4
REQUEST = EditRequest("France", "The capital of {}", "X", "Y", ("The capital city of {}",), "capital:France")


def tiny_rome(layer: int = 1) -> Rome:
    return Rome(layer=layer, cov_texts=TEXTS, weight_decay=0.0, clamp_norm=100.0, steps=50)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_rome_makes_the_new_target_the_argmax_and_leaves_the_input_model_unchanged():
    lm = tiny_lm(seed=0)
    x = lm.tokenizer.convert_tokens_to_ids("X")
    assert lm.logits([REQUEST.prompt])[0].argmax() != x
    original, trainable = weights(lm.model), [p.requires_grad for p in lm.model.parameters()]
    edited = tiny_rome().edit(lm, REQUEST)
    assert edited.logits([REQUEST.prompt])[0].argmax() == x
    assert all(torch.equal(v, lm.model.state_dict()[k]) for k, v in original.items())
    assert all(p.grad is None for p in lm.model.parameters())
    assert [p.requires_grad for p in lm.model.parameters()] == trainable


def test_rome_changes_one_matrix_by_a_rank_one_update():
    lm = tiny_lm(seed=0)
    edited = tiny_rome(layer=0).edit(lm, REQUEST)
    before, after = lm.model.state_dict(), edited.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == [DOWN_PROJ.format(0) + ".weight"]
    diff = after[changed[0]] - before[changed[0]]
    singular = torch.linalg.svdvals(diff)
    assert torch.linalg.matrix_rank(diff, rtol=1e-5).item() == 1 and singular[0] > 0


def test_constrained_finetuning_stays_in_its_box_and_touches_only_down_proj():
    lm = tiny_lm(seed=0)
    edited = FineTuneEdit(layer=1, max_change=1e-3, steps=10, lr=1e-2).edit(lm, REQUEST)
    before, after = lm.model.state_dict(), edited.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == [DOWN_PROJ.format(1) + ".weight"]
    assert (after[changed[0]] - before[changed[0]]).abs().max() <= 1e-3 + 1e-7


def test_scores_count_wins_on_prompt_and_paraphrases_and_unchanged_other_facts():
    lm = tiny_lm(seed=0)
    facts = [Fact("capital", s, "Z") for s in ("France", "Spain", "Chile")] + [Fact("language", "Peru", "Z")]
    before = greedy_answers(lm, [f.prompt for f in facts])
    request = replace(REQUEST, target_true=lm.tokenizer.decode([int(lm.logits([REQUEST.prompt])[0].argmax())]))
    assert request.target_true != request.target_new
    unedited = score_edit(lm, request, facts, before)
    assert unedited["efficacy"] == 0.0 and unedited["top1"] == 0.0 and unedited["specificity"] == 1.0
    edited = tiny_rome().edit(lm, request)
    scores = score_edit(edited, request, facts, before)
    assert scores["efficacy"] == 1.0 and scores["top1"] == 1.0 and scores["p_new"] > scores["p_old"]
    assert 0.0 <= scores["specificity"] <= 1.0 and 0.0 <= scores["paraphrase"] <= 1.0


def test_bad_requests_give_clear_errors():
    lm = tiny_lm(seed=0)
    rome = Rome(cov_texts=TEXTS)
    with pytest.raises(EditError, match="' Paris' is 6 tokens"):
        rome.edit(lm, EditRequest("France", "The capital of {} is", " Paris"))
    with pytest.raises(EditError, match="layer 5 does not exist"):
        Rome(layer=5, cov_texts=TEXTS).edit(lm, REQUEST)
    with pytest.raises(EditError, match="exactly one"):
        rome.edit(lm, EditRequest("France", "The capital of France is", "X"))
    with pytest.raises(EditError, match="layer -1 does not exist"):
        FineTuneEdit(layer=-1).edit(lm, REQUEST)


def test_facts_and_counterfactual_requests():
    facts = load_facts()
    assert len({f.id for f in facts}) == len(facts) and {f.relation for f in facts} == set(RELATIONS)
    requests = edit_requests(facts, 20, seed=3)
    assert requests == edit_requests(facts, 20, seed=3)
    by_id = {f.id: f for f in facts}
    for r in requests:
        fact = by_id[r.fact_id]
        assert r.prompt == fact.prompt and r.target_true == fact.target and r.target_new != fact.target
        assert r.target_new.strip() in {f.object for f in facts if f.relation == fact.relation}
    with pytest.raises(DataError, match="only"):
        edit_requests(facts[:3], 4)
    with pytest.raises(DataError, match="unknown relations"):
        load_facts(["colour"])


def test_the_edit_track_runs_each_editor_on_every_request(tmp_path):
    """The edit role: each request edited on the unedited model and scored by the kit; the track
    averages efficacy and specificity over edits; the unedited baseline scores no efficacy."""
    lm = tiny_lm(seed=0)
    facts = [Fact("capital", s, "Z") for s in ("France", "Spain", "Chile")]
    request = replace(REQUEST, target_true=lm.tokenizer.decode([int(lm.logits([REQUEST.prompt])[0].argmax())]))
    before = greedy_answers(lm, [f.prompt for f in facts])
    kit = type("FactsKit", (), {"requests": [request], "original": lm,
                                "score_edit": lambda self, edited, r: score_edit(edited, r, facts, before)})()
    subject = type("Subject", (), {"lm": lm})()
    track = TRACKS.get("edit")
    results = {}
    for name, editor in {"rome": tiny_rome(), "ft": FineTuneEdit(layer=1, max_change=None, lr=1e-2),
                         "unedited": make_tool("unedited")}.items():
        answer = ask_here("edit", editor, subject, kit, 0)
        assert [row["fact"] for row in answer.value] == ["capital:France"]
        results[name] = track.aggregate([{"scores": track.score(answer, kit, 0)}], 0)
    assert results["unedited"]["efficacy"]["value"] == 0.0 and results["unedited"]["specificity"]["value"] == 1.0
    assert results["rome"]["efficacy"]["value"] == 1.0 and results["rome"]["wall_s"]["value"] > 0


def test_edit_suite_names_the_problem_when_the_model_knows_too_few_facts(tmp_path):
    """The fact-editing suite on a model that knows none of the facts: every editor's cell fails
    with a message that says so, and the command exits non-zero."""
    from typer.testing import CliRunner

    from deepaudit.cli import app

    folder = tmp_path / "tiny"
    lm = tiny_lm(seed=0)
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    suite = tmp_path / "edit.toml"
    suite.write_text(f'family = "lm"\nname = "edit-tiny"\nbase = "{folder}"\n[referee]\nedits = 2\n'
                     '[[organism]]\nkind = "reference"\ntask = "facts"\n')
    result = CliRunner().invoke(app, ["game", "run", "--suite", str(suite), "--tools", "rome", "--jobs", "1",
                                      "--zoo", str(tmp_path / "zoo"), "--store", str(tmp_path / "store.sqlite")])
    assert result.exit_code == 1 and "only 0 facts" in result.output, result.output
