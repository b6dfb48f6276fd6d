"""`deepaudit audit`: one command on a user's own model. Every model source (organism,
weights + card, weights + entry point, Hugging Face folder), the staged protocol and its
report, the refusal of pickles, bad input with the partial report kept, and resuming."""

from __future__ import annotations

import json
import pickle
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from deepaudit.audit import run_audit
from deepaudit.audit.reliability import measured_reliability
from deepaudit.audit.stages import runnable_tools
from deepaudit.cli import app
from deepaudit.data import load_dataset
from deepaudit.subject import load_model, load_subject
from deepaudit.tools import tool_specs
from deepaudit.tools.weight_stats import WeightStats

# fixed tool sizes: the tests do not depend on how fast this machine is
SMALL = {"neural_cleanse": {"steps": 60}, "nc_contrast": {"steps": 60, "pair_steps": 40},
         "mahalanobis": {"candidates": 16}, "strip": {"overlays": 8},
         **{t: {"inputs": 16} for t in ("act_patch", "attr_patch", "captum_conductance", "ablation_search")}}
FAST = dict(budget_s=30, max_inputs=96, threads=1, tool_params=SMALL)
FINDING_KEYS = {"id", "severity", "title", "what", "supported_by", "evidence", "plots", "confidence",
                "reliability", "cost"}


def report_of(out) -> dict:
    return json.loads((out / "report.json").read_text())


def digits_npz(path, n: int = 64, labels: np.ndarray | None = None, x: np.ndarray | None = None):
    xs, ys = load_dataset("digits").split("audit")
    np.savez(path, x=xs[:n].numpy() if x is None else x, y=ys[:n].numpy() if labels is None else labels)
    return path


class Payload:
    """A pickle that creates a file when (and only when) it is unpickled."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


@pytest.fixture(scope="module")
def trojan_audit(smoke_zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit") / "trojan"
    return out, run_audit(str(smoke_zoo.trojan), "digits", out, **FAST)


def test_organism_audit_runs_every_stage(trojan_audit):
    """The smoke trojan: every stage runs, cheapest first; the report is complete."""
    out, report = trojan_audit
    assert report == report_of(out)
    assert report["schema"] == 1 and report["status"] == "complete" and report["errors"] == []
    auditors = runnable_tools()
    assert {"neural_cleanse", "mahalanobis", "strip", "weight_stats"} <= set(auditors)
    assert auditors[0] == "neural_cleanse" and "random" not in auditors and "meta_classifier" not in auditors
    assert auditors[-4:] == sorted(s.name for s in tool_specs(family="vision", role="localize"))  # after the trigger
    assert list(report["stages"]) == ["card", "blackbox"] + [f"tool:{t}" for t in auditors]
    assert {s["status"] for s in report["stages"].values()} == {"done"}
    card = report["stages"]["card"]["data"]
    assert card["parameters"] == sum(p.numel() for p in load_model(report["model"]["source"]["path"]).parameters())
    assert card["accuracy"] > 0.8 and [s["layer"] for s in card["layers"]][:2] == ["flatten", "fc1"]
    assert report["model"]["source"]["kind"] == "organism" and report["data"]["used"] == 96


def test_findings_carry_evidence_confidence_reliability_and_cost(trojan_audit):
    _, report = trojan_audit
    findings = {f["id"]: f for f in report["findings"]}
    assert {"backdoor", "trigger", "blackbox", "sanity"} <= set(findings)
    for f in findings.values():
        assert set(f) == FINDING_KEYS
        assert f["cost"]["wall_s"] >= 0 and f["cost"]["forward_passes"] >= 0
    backdoor = findings["backdoor"]
    assert set(backdoor["evidence"]) == {"neural_cleanse", "nc_contrast", "mahalanobis", "weight_stats"}
    assert report["verdict"]["decided_by"] == "nc_contrast"  # the classifiers' verdict tool (deepaudit.verdicts)
    # no results store in this DEEPAUDIT_HOME: reliability is "not measured", never invented
    assert {r["status"] for r in backdoor["reliability"].values()} == {"not measured"}
    assert backdoor["cost"]["forward_passes"] > 0
    nc = report["stages"]["tool:neural_cleanse"]["data"]
    assert 0 <= nc["trigger_success"] <= 1 and np.asarray(nc["trigger"]["mask"]).shape == (8, 8)
    assert report["stages"]["tool:strip"]["data"]["inputs"]["trigger_from"] == "tool:neural_cleanse"
    localizers = [s.name for s in tool_specs(family="vision", role="localize")]
    for tool in localizers:  # each localizer: its top units, and what zeroing them does to the trigger
        loc = findings[f"localize:{tool}"]["evidence"]
        assert len(loc["top_units"]) == 10 and loc["k"] == 5
        assert set(loc["trigger_success"]) == {"none", "top", "random"}
        assert all(0 <= v <= 1 for v in loc["trigger_success"].values())


def test_truth_check_only_after_the_fact(trojan_audit, smoke_zoo):
    """An organism's report is checked against its truth; the tools saw only a Subject."""
    _, report = trojan_audit
    from deepaudit.zoo import read_truth

    truth = read_truth(smoke_zoo.trojan)
    check = report["truth_check"]
    assert check["planted"] is True and check["true_target"] == truth["target"]
    assert check["flagged"] == (report["verdict"]["label"] == "backdoor suspected")
    inconclusive = report["verdict"]["label"] == "inconclusive"  # then the verdict is neither right nor wrong
    assert check["verdict_correct"] == (None if inconclusive else check["flagged"])
    assert 0 <= check["recovered_trigger_asr_heldout"] <= 1 and 0 <= check["recovered_mask_iou"] <= 1
    stage_text = json.dumps(report["stages"])
    assert "truth" not in stage_text and "poison" not in stage_text


def test_html_report_is_self_contained(trojan_audit):
    out, report = trojan_audit
    page = (out / "report.html").read_text()
    assert page.index(report["verdict"]["label"]) < page.index("Findings")  # the verdict comes first
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", page), "the page must load nothing from a network"
    assert page.count("src='data:image/png;base64,") >= 6  # layers, black-box, trigger, norms, histograms
    assert "<script" not in page and report["versions"]["torch"] in page


def test_cli_weights_with_card(smoke_zoo, tmp_path):
    """A bare safetensors file plus a card JSON, through the command line."""
    weights = tmp_path / "model.safetensors"
    shutil.copy(smoke_zoo.twin / "weights.safetensors", weights)
    card = {k: v for k, v in json.loads((smoke_zoo.twin / "card.json").read_text()).items()
            if k in ("arch", "arch_kwargs", "input_shape", "num_classes", "value_range")}
    (tmp_path / "my-card.json").write_text(json.dumps(card))
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["audit", str(weights), "--card", str(tmp_path / "my-card.json"), "--data",
                                      str(digits_npz(tmp_path / "clean.npz")), "--out", str(out), "--budget", "5",
                                      "--tools", "weight_stats", "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = report_of(out)
    assert report["model"]["source"]["kind"] == "weights" and "truth_check" not in report
    assert report["command"].startswith("deepaudit audit ") and report["command"].endswith("--seed 0 --threads 1")
    assert "--tools weight_stats" in report["command"]
    assert report["verdict"]["label"] in ("backdoor suspected", "no backdoor found")
    assert report["verdict"]["label"].upper() in result.output


def test_entry_point_and_label_free_data(smoke_zoo, tmp_path):
    """Weights with a `file.py:function` architecture; unlabelled .npy data fills in the card."""
    (tmp_path / "mynet.py").write_text("from deepaudit.models import build_model\n"
                                       "def make():\n    return build_model('mlp', (1, 8, 8), 10)\n")
    x = load_dataset("digits").split("audit")[0][:50].numpy()
    np.save(tmp_path / "clean.npy", x)
    out = tmp_path / "report"
    shutil.copy(smoke_zoo.trojan / "weights.safetensors", tmp_path / "w.safetensors")
    report = run_audit(str(tmp_path / "w.safetensors"), str(tmp_path / "clean.npy"), out,
                       arch=f"{tmp_path / 'mynet.py'}:make", tools=["weight_stats"], **FAST)
    card = report["stages"]["card"]["data"]
    assert report["status"] == "complete" and report["model"]["source"]["entry_point"].endswith("mynet.py:make")
    assert card["card"]["input_shape"] == [1, 8, 8] and card["card"]["num_classes"] == 10
    assert "accuracy" not in card and report["data"]["labelled"] is False
    direct = WeightStats().audit(load_subject(smoke_zoo.trojan, budget=8))  # weights only: same answer
    assert report["stages"]["tool:weight_stats"]["data"]["p_planted"] == pytest.approx(direct.p_planted)


def test_pickle_weights_refused_and_never_run(smoke_zoo, tmp_path):
    """A code-executing pickle is refused with the safe formats named; the payload never runs,
    not even with --trust-pickle (weights_only=True); a real torch.save file loads when trusted."""
    sentinel = tmp_path / "SENTINEL"
    bad = tmp_path / "model.pt"
    bad.write_bytes(pickle.dumps(Payload(sentinel), protocol=2))
    card = tmp_path / "card.json"
    shutil.copy(smoke_zoo.trojan / "card.json", card)
    refused = run_audit(str(bad), "digits", tmp_path / "r1", card=card, **FAST)
    assert refused["status"] == "failed" and "pickle" in refused["errors"][0]
    assert "safetensors" in refused["errors"][0] and "trust_pickle" in refused["errors"][0]
    trusted = run_audit(str(bad), "digits", tmp_path / "r2", card=card, trust_pickle=True, **FAST)
    assert trusted["status"] == "failed" and "weights_only" in trusted["errors"][0]
    assert not sentinel.exists()
    assert "pickle" in (tmp_path / "r1" / "report.html").read_text()
    cli = CliRunner().invoke(app, ["audit", str(bad), "--card", str(card), "--data", "digits",
                                   "--out", str(tmp_path / "r4")])
    assert cli.exit_code == 2 and "pickle" in cli.output and "NOT AUDITED" in cli.output
    good = tmp_path / "good.pt"
    torch.save(load_file(smoke_zoo.trojan / "weights.safetensors"), good)
    ok = run_audit(str(good), "digits", tmp_path / "r3", card=card, trust_pickle=True, tools=["weight_stats"], **FAST)
    assert ok["status"] == "complete"


def test_pickled_data_refused(smoke_zoo, tmp_path):
    sentinel = tmp_path / "SENTINEL"
    np.save(tmp_path / "clean.npy", np.array([Payload(sentinel)], dtype=object), allow_pickle=True)
    report = run_audit(str(smoke_zoo.trojan), str(tmp_path / "clean.npy"), tmp_path / "r", **FAST)
    assert report["status"] == "failed" and "pickle" in report["errors"][0] and not sentinel.exists()


def _nan_weights(folder):
    state = load_file(folder / "weights.safetensors")
    state["fc1.weight"][0, 0] = float("nan")
    save_file(state, folder / "weights.safetensors")
    return folder


@pytest.mark.parametrize("problem, message", [
    ("shape", "shape (1, 4, 4) per input, but the model expects (1, 8, 8)"),
    ("labels", "labels range over [0, 12] but the model has 10 outputs"),
    ("empty", "is empty"),
    ("nan_data", "NaN or infinite values"),
    ("nan_activations", "NaN or infinite activations on the clean data (first at layer 'fc1')"),
    ("raises", "the model raised RuntimeError"),
])
def test_bad_input_gets_a_clear_message_and_a_report(problem, message, smoke_zoo, organism_copy, tmp_path):
    model, arch, data = str(smoke_zoo.trojan), None, "digits"
    if problem == "shape":
        data = digits_npz(tmp_path / "d.npz", x=np.zeros((10, 1, 4, 4), np.float32), labels=np.zeros(10, int))
    elif problem == "labels":
        data = digits_npz(tmp_path / "d.npz", labels=np.arange(64) % 13)
    elif problem == "empty":
        data = digits_npz(tmp_path / "d.npz", x=np.zeros((0, 1, 8, 8), np.float32), labels=np.zeros(0, int))
    elif problem == "nan_data":
        data = digits_npz(tmp_path / "d.npz", x=np.full((4, 1, 8, 8), np.nan, np.float32), labels=np.zeros(4, int))
    elif problem == "nan_activations":
        model = str(_nan_weights(organism_copy()))
    elif problem == "raises":
        (tmp_path / "broken.py").write_text(
            "import torch\nfrom deepaudit.models import build_model\n"
            "class Broken(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.inner = build_model('mlp', (1, 8, 8), 10)\n"
            "    def forward(self, x):\n        raise RuntimeError('kaputt')\n"
            "def make():\n    return Broken()\n")
        shutil.copy(smoke_zoo.trojan / "weights.safetensors", tmp_path / "w.safetensors")
        state = {f"inner.{k}": v for k, v in load_file(tmp_path / "w.safetensors").items()}
        save_file(state, tmp_path / "w.safetensors")
        model, arch = str(tmp_path / "w.safetensors"), f"{tmp_path / 'broken.py'}:make"
    out = tmp_path / "report"
    report = run_audit(model, str(data), out, arch=arch, **FAST)
    assert report["status"] == "failed" and report["verdict"]["label"] == "not audited"
    assert any(message in e for e in report["errors"]), report["errors"]
    assert report_of(out)["errors"] == report["errors"]
    assert message.split(" (")[0] in (out / "report.html").read_text().replace("&#x27;", "'")


def test_a_tool_that_raises_keeps_the_rest(smoke_zoo, tmp_path, monkeypatch):
    """A failing tool is recorded with its error; the stages before and after still count."""
    def boom(self, subject):
        raise RuntimeError("tool exploded")

    monkeypatch.setattr(WeightStats, "audit", boom)
    report = run_audit(str(smoke_zoo.twin), "digits", tmp_path / "r", tools=["weight_stats", "mahalanobis"], **FAST)
    stages = report["stages"]
    assert stages["tool:weight_stats"]["status"] == "failed" and "tool exploded" in stages["tool:weight_stats"]["error"]
    assert stages["tool:mahalanobis"]["status"] == "done" and report["status"] == "complete"
    assert "limit:tool:weight_stats" in {f["id"] for f in report["findings"]}


def test_removers_are_not_run_by_an_audit(smoke_zoo, tmp_path):
    """An audit only looks: a tool that edits the model is skipped, with the reason."""
    report = run_audit(str(smoke_zoo.twin), "digits", tmp_path / "r", tools=["finetune"], **FAST)
    stage = report["stages"]["tool:finetune"]
    assert stage["status"] == "skipped" and "not an auditor" in stage["message"]
    assert report["verdict"]["label"] == "inconclusive"


def test_interrupted_audit_resumes(smoke_zoo, tmp_path, monkeypatch):
    """Ctrl-C during a stage keeps the report so far; the same call resumes from the cache."""
    out = tmp_path / "r"
    tools = ["weight_stats", "mahalanobis"]
    from deepaudit.tools.mahalanobis import Mahalanobis

    real_audit = Mahalanobis.audit

    def interrupt(self, subject):
        raise KeyboardInterrupt

    monkeypatch.setattr(Mahalanobis, "audit", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_audit(str(smoke_zoo.trojan), "digits", out, tools=tools, **FAST)
    partial = report_of(out)
    assert partial["status"] == "interrupted"
    assert list(partial["stages"]) == ["card", "blackbox", "tool:weight_stats"]
    monkeypatch.setattr(Mahalanobis, "audit", real_audit)
    resumed = run_audit(str(smoke_zoo.trojan), "digits", out, tools=tools, **FAST)
    assert resumed["status"] == "complete"
    assert [n for n, s in resumed["stages"].items() if s.get("resumed")] == ["card", "blackbox", "tool:weight_stats"]
    assert resumed["stages"]["tool:mahalanobis"]["status"] == "done"
    assert resumed["stages"]["blackbox"]["data"] == partial["stages"]["blackbox"]["data"]
    # other data: the cache does not apply
    other = run_audit(str(smoke_zoo.trojan), "digits", out, tools=tools, seed=1, **FAST)
    assert not any(s.get("resumed") for s in other["stages"].values())


def test_reliability_read_from_the_leaderboard(smoke_zoo, tmp_path, monkeypatch):
    """With game results in the store, each tool's benchmark scores come from the leaderboard."""
    import deepaudit.metrics as metrics
    from deepaudit.game.leaderboard import leaderboard
    from deepaudit.game.runner import run_game

    monkeypatch.setattr(metrics, "N_BOOTSTRAP", 100)  # the intervals are not under test here
    store = tmp_path / "results.sqlite"
    run_game("smoke", tools=["weight_stats"], store=store, zoo_dir=smoke_zoo.dir)
    rel = measured_reliability(store, ["weight_stats", "strip"], suites=("smoke",))
    board = leaderboard(store, "smoke")
    row = next(r for r in board["rows"] if r["tool"] == "weight_stats")
    assert rel["weight_stats"]["status"] == "measured" and rel["weight_stats"]["suite"] == "smoke"
    assert rel["weight_stats"]["detect_auroc"]["value"] == pytest.approx(row["tracks"]["detect"]["auroc"]["value"], abs=1e-4)
    assert rel["strip"]["status"] == "not measured"
    assert measured_reliability(tmp_path / "missing.sqlite", ["strip"])["strip"]["status"] == "not measured"
    from deepaudit.audit.reliability import _current
    from deepaudit.tools.registry import tool_spec

    now = tool_spec("weight_stats")
    assert _current({"tool": "weight_stats", "params": now.digest(now.params()), "parameters": now.params()})
    older = {"tool": "weight_stats", "params": "0123456789ab", "parameters": now.params()}  # another version's digest
    assert not _current(older)
    other_family = measured_reliability(store, ["weight_stats"], suites=("lm",))["weight_stats"]  # never another suite's
    assert other_family["status"] == "not measured" and "--suite lm" in other_family["how"]
    # a half-written leaderboard cache (another audit writing it at that moment) is computed again, not a crash
    from deepaudit.paths import home

    for cached in (home() / "cache").glob("leaderboards-*.json"):
        cached.write_text('{"stamp": [1, ')
    again = measured_reliability(store, ["weight_stats"], suites=("smoke",))["weight_stats"]
    assert again["detect_auroc"] == rel["weight_stats"]["detect_auroc"]
    assert not list((home() / "cache").glob("leaderboards-*.tmp"))


def test_unknown_sources_are_named(tmp_path):
    bad_model = run_audit(str(tmp_path / "nowhere"), "digits", tmp_path / "a", **FAST)
    assert "not found" in bad_model["errors"][0]
    weights_only = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(1)}, weights_only)
    no_arch = run_audit(str(weights_only), "digits", tmp_path / "b", **FAST)
    assert "--card" in no_arch["errors"][0] and "--arch" in no_arch["errors"][0]
    no_data = run_audit(str(weights_only), "no-such-data", tmp_path / "c", **FAST)
    assert no_data["status"] == "failed"


# -- Hugging Face models (transformers is optional) -------------------------------------
def test_hf_image_classifier(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=32, num_labels=10)
    transformers.ViTForImageClassification(cfg).save_pretrained(tmp_path / "vit", safe_serialization=True)
    report = run_audit(str(tmp_path / "vit"), "digits", tmp_path / "r", tools=["weight_stats"], **{**FAST, "max_inputs": 32})
    assert report["status"] == "complete" and report["model"]["source"]["hf_kind"] == "image_classifier"
    assert report["stages"]["card"]["data"]["card"]["input_shape"] == [1, 8, 8]
    assert report["stages"]["tool:weight_stats"]["status"] == "done"
    assert 0 <= report["stages"]["card"]["data"]["accuracy"] <= 1


def test_hf_causal_lm_on_text(smoke_zoo, tmp_path):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = "the a cat dog sat on mat ran far and big small red blue".split()
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[EOS]"] + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                                eos_token="[EOS]")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "lm", safe_serialization=True)
    fast.save_pretrained(tmp_path / "lm")
    (tmp_path / "clean.txt").write_text("the cat sat on the mat\nthe dog ran far\na big red dog\n" * 4)
    report = run_audit(str(tmp_path / "lm"), str(tmp_path / "clean.txt"), tmp_path / "r", **FAST)
    stages = report["stages"]
    assert report["status"] == "complete" and report["model"]["family"] == "lm"  # a causal LM: the lm tools
    assert stages["card"]["data"]["card"]["vocab"] == len(vocab)
    assert stages["blackbox"]["status"] == "done"
    assert "tool:neural_cleanse" not in stages and "tool:weight_stats" not in stages
    # text for a vision model: a clear refusal
    refused = run_audit(str(smoke_zoo.trojan), str(tmp_path / "clean.txt"), tmp_path / "r2", **FAST)
    assert refused["status"] == "failed" and "needs a language model with a tokenizer" in refused["errors"][0]


def test_verdict_says_inconclusive_when_detectors_disagree():
    """A detector that flags the model is never hidden behind "no backdoor found"."""
    from deepaudit.audit.findings import verdict

    def stages(**p_planted):
        out = {"card": {"status": "done", "data": {}}}
        out.update({f"tool:{t}": {"status": "done", "data": {"p_planted": p, "target": 0}} for t, p in p_planted.items()})
        return out

    measured = {t: {"status": "measured", "detect_auroc": {"value": v}}
                for t, v in (("neural_cleanse", 0.6), ("weight_stats", 0.7))}
    split = verdict(stages(neural_cleanse=0.9, weight_stats=0.1), measured)
    assert split["label"] == "inconclusive" and "neural_cleanse" in split["summary"]
    assert verdict(stages(neural_cleanse=0.2, weight_stats=0.1), measured)["label"] == "no backdoor found"
    assert verdict(stages(neural_cleanse=0.9, weight_stats=0.6), measured)["label"] == "backdoor suspected"


def test_verdict_is_the_family_verdict_tool_read_by_its_thresholds(monkeypatch):
    """Where the family's thresholds name a verdict tool, its answer decides by those thresholds
    (the other detectors are listed, not averaged in); a failed stage turns a pass into
    "inconclusive"; an inconclusive verdict tool, or none, falls back to the weighted mean."""
    from deepaudit import verdicts
    from deepaudit.audit.findings import verdict

    monkeypatch.setitem(verdicts.THRESHOLDS, "vision", verdicts.Thresholds(0.9, 0.3, "a test", tool="combine_fisher"))

    def stages(failed: bool = False, **answers):
        out = {"card": {"status": "done", "data": {}}}
        out.update({f"tool:{t}": {"status": "done", "data": a} for t, a in answers.items()})
        return out | ({"tool:strip": {"status": "failed", "error": "broke"}} if failed else {})

    def label(p: float, **kw) -> dict:
        return verdict(stages(combine_fisher={"p_planted": p, "target": 3}, neural_cleanse={"p_planted": 0.99}, **kw),
                       {}, "vision")

    flagged = label(0.95)
    assert flagged["label"] == "backdoor suspected" and flagged["target"] == 3 and flagged["decided_by"] == "combine_fisher"
    assert label(0.5)["label"] == "inconclusive" and label(0.5)["target"] is None
    assert label(0.1)["label"] == "no backdoor found" and "0.99" not in label(0.1)["summary"]
    assert label(0.1, failed=True)["label"] == "inconclusive"
    unsure = stages(combine_fisher={"p_planted": 0.5, "evidence": {"inconclusive": "no reference"}},
                    neural_cleanse={"p_planted": 0.9})
    fallback = verdict(unsure, {}, "vision")
    assert "decided_by" not in fallback and fallback["label"] == "backdoor suspected"
    cleared = verdict(stages(neural_cleanse={"p_planted": 0.2}), {}, "lm")
    assert cleared["label"] == "no backdoor found" and "lie" in cleared["summary"]  # what lm tools cannot see is said
    assert "lie" not in label(0.1)["summary"]


def test_a_card_with_its_own_thresholds_is_read_by_them(monkeypatch):
    """The verdict tool's answer on a model whose card names a benchmark card with its own
    thresholds is read by those, in the audit and in the game's verdict track alike; any other
    card by the family's; another tool's answer still at the a-priori 0.5."""
    from deepaudit import verdicts
    from deepaudit.audit.findings import verdict
    from deepaudit.game.tracks.verdict import verdict_label

    family = verdicts.Thresholds(0.9, 0.3, "the family's", tool="nc_contrast")
    monkeypatch.setitem(verdicts.THRESHOLDS, "vision", family)
    monkeypatch.setitem(verdicts.CARD_THRESHOLDS, "vision",
                        {("digits", "cnn"): verdicts.Thresholds(0.4, 0.1, "digits CNNs'", tool="nc_contrast")})
    digits_cnn, other = {"dataset": "digits", "arch": "cnn"}, {"dataset": "digits", "arch": "resnet"}
    assert verdicts.thresholds("vision", "nc_contrast", card=digits_cnn).chosen == "digits CNNs'"
    assert verdicts.thresholds("vision", "nc_contrast", card=other) == family
    assert verdicts.thresholds("vision", "mm_bd", card=digits_cnn) == verdicts.DEFAULT

    def audited(card: dict) -> dict:
        stages = {"card": {"status": "done", "data": {"card": card}},
                  "tool:nc_contrast": {"status": "done", "data": {"p_planted": 0.6, "target": 2}}}
        return verdict(stages, {}, "vision")

    assert audited(digits_cnn)["label"] == "backdoor suspected" and "digits CNNs'" in audited(digits_cnn)["summary"]
    assert audited(other)["label"] == "inconclusive" and audited(other)["thresholds"]["suspect"] == 0.9
    cell = {"tool": "nc_contrast", "answer": {}, "scores": {"p_planted": 0.6},
            "labels": {"family": "vision", "planted": True, **digits_cnn}}
    assert verdict_label(cell) == "backdoor suspected"
    assert verdict_label({**cell, "labels": {**cell["labels"], **other}}) == "inconclusive"
