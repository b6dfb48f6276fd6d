"""`deepaudit audit` on hostile or odd inputs (issue 17): a model's own code never runs unless the
user says so; the stage cache follows every file that defines the model; a failed stage never
reads as a pass; bad output folders, foreign truth files, odd layer names, unmeasurable trigger
figures, causal LMs by any class name and silent casts each get a clear answer, never a traceback."""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from deepaudit.audit import run_audit
from deepaudit.cli import app
from deepaudit.data import load_dataset
from deepaudit.errors import DeepAuditError

FAST = dict(budget_s=30, max_inputs=64, threads=1, tools=["weight_stats"])
SRC = Path(__file__).resolve().parents[1] / "src" / "deepaudit"
WORDS = "the a cat dog sat on mat ran far and big small red blue".split()


def report_of(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def audit_cli(*args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["audit", *args, "--budget", "30", "--threads", "1", "--max-inputs", "64"],
                              input=stdin)


def card_folder(smoke_zoo, dest: Path, role: str = "twin") -> Path:
    """A card folder (card.json + weights.safetensors, no truth) copied from a smoke organism."""
    dest.mkdir(parents=True)
    for name in ("card.json", "weights.safetensors"):
        shutil.copy(getattr(smoke_zoo, role) / name, dest / name)
    return dest


def digits_npz(path: Path, y_dtype=np.int64, n: int = 64) -> Path:
    xs, ys = load_dataset("digits").split("audit")
    np.savez(path, x=xs[:n].numpy(), y=ys[:n].numpy().astype(y_dtype))
    return path


# -- Hugging Face models -----------------------------------------------------------------
def tiny_gpt2(folder: Path, head: bool = True) -> Path:
    """A tiny random GPT-2 (class GPT2LMHeadModel, or the bare GPT2Model) with a word tokenizer."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[EOS]"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                  pad_token_id=0, bos_token_id=2, eos_token_id=2)
    cls = transformers.GPT2LMHeadModel if head else transformers.GPT2Model
    cls(cfg).save_pretrained(folder)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                         eos_token="[EOS]").save_pretrained(folder)
    return folder


def clean_text(tmp_path: Path) -> Path:
    (tmp_path / "clean.txt").write_text("the cat sat on the mat\nthe dog ran far\na big red dog\n" * 4)
    return tmp_path / "clean.txt"


@pytest.fixture
def remote_code_folder(tmp_path: Path, monkeypatch):
    """Make a tiny GPT-2 folder whose config.json maps the Auto classes to a local module that
    writes a marker file when imported; ``model_type`` unknown (custom code needed) or known.
    transformers copies such code into a modules cache: here a private one."""
    dynamic = pytest.importorskip("transformers.dynamic_module_utils")
    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    return lambda model_type: _remote_code_folder(tmp_path, model_type)


def _remote_code_folder(tmp_path: Path, model_type: str) -> tuple[Path, Path]:
    folder = tiny_gpt2(tmp_path / "hfremote")
    marker = tmp_path / "PWNED"
    (folder / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('custom code ran')\n"
        "from transformers import GPT2Config, GPT2LMHeadModel\n\n\n"
        "class EvilConfig(GPT2Config):\n    model_type = 'evil'\n\n\n"
        "class EvilModel(GPT2LMHeadModel):\n    config_class = EvilConfig\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "evil.EvilConfig",
                                                   "AutoModelForCausalLM": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


@pytest.mark.parametrize("model_type", ["evil", "gpt2"])
def test_hf_custom_code_never_runs_without_the_flag(model_type, remote_code_folder, tmp_path):
    """`echo y | deepaudit audit hfremote`: no prompt is read, the model's code does not run, and the
    refusal names --trust-remote-code; `deepaudit lm convert` refuses it too."""
    folder, marker = remote_code_folder(model_type)
    out = tmp_path / "r"
    result = audit_cli(str(folder), "--data", str(clean_text(tmp_path)), "--out", str(out), stdin="y\ny\ny\n")
    assert result.exit_code == 2, result.output
    assert "custom code" in result.output and "--trust-remote-code" in result.output
    assert not marker.exists()
    assert report_of(out)["status"] == "failed"
    converted = CliRunner().invoke(app, ["lm", "convert", "--model", str(folder)], input="y\ny\n")
    assert converted.exit_code == 2 and "custom code" in converted.output, converted.output
    assert not marker.exists()


@pytest.mark.parametrize("model_type", ["evil", "gpt2"])
def test_lm_loader_refuses_custom_code(model_type, remote_code_folder, monkeypatch):
    """Also with "y" waiting on stdin, and also for a known model type (where transformers would
    silently load its own class instead of the model's code)."""
    import io

    from deepaudit.lm.loader import LMError, load_lm

    monkeypatch.setattr("sys.stdin", io.StringIO("y\n" * 4))
    folder, marker = remote_code_folder(model_type)
    with pytest.raises(LMError, match="custom code"):
        load_lm(folder, cache=False)
    assert not marker.exists()


def test_trust_remote_code_flag_is_the_only_way_in(remote_code_folder, tmp_path):
    """With --trust-remote-code the user has chosen to run the model's code: it runs."""
    folder, marker = remote_code_folder("evil")
    out = tmp_path / "r"
    result = audit_cli(str(folder), "--data", str(clean_text(tmp_path)), "--out", str(out), "--tools", "weight_stats",
                       "--trust-remote-code")
    assert result.exit_code == 0 and marker.exists(), result.output
    report = report_of(out)
    assert report["model"]["source"]["trust_remote_code"] is True and "--trust-remote-code" in report["command"]


def test_every_from_pretrained_refuses_remote_code():
    """Each from_pretrained / get_tokenizer_config call in the package says trust_remote_code explicitly."""
    calls = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("from_pretrained", "from_config"):
                calls.append((path.relative_to(SRC), node.lineno, {k.arg for k in node.keywords}))
    assert calls
    assert [c[:2] for c in calls if "trust_remote_code" not in c[2]] == []


def test_causal_lm_of_any_class_name_is_accepted(tmp_path):
    """GPT2LMHeadModel maps through AutoModelForCausalLM although its name does not end in ForCausalLM;
    the bare GPT2Model (no LM head) is refused by name."""
    report = run_audit(str(tiny_gpt2(tmp_path / "gpt2")), str(clean_text(tmp_path)), tmp_path / "r",
                       **{**FAST, "tools": None})
    assert report["status"] == "complete", report["errors"]
    assert report["model"]["source"]["hf_kind"] == "causal_lm" and report["model"]["card"]["arch"] == "GPT2LMHeadModel"
    skipped = [s for n, s in report["stages"].items() if n.startswith("tool:")]  # the lm tools read Llama layouts
    assert skipped and all(s["status"] == "skipped" and "Llama-style" in s["message"] for s in skipped)
    bare = run_audit(str(tiny_gpt2(tmp_path / "bare", head=False)), str(clean_text(tmp_path)), tmp_path / "r2", **FAST)
    assert bare["status"] == "failed" and "GPT2Model" in bare["errors"][0] and "unsupported" in bare["errors"][0]


# -- the stage cache follows the model -------------------------------------------------
def test_cache_not_reused_when_the_entry_point_changes(smoke_zoo, tmp_path):
    """Edit ep.py to negate the logits and rerun into the same --out: the stages are recomputed."""
    ep = tmp_path / "ep.py"
    ep.write_text("from deepaudit.models import build_model\n\n\n"
                  "def make():\n    return build_model('mlp', (1, 8, 8), 10)\n")
    shutil.copy(smoke_zoo.twin / "weights.safetensors", tmp_path / "w.safetensors")
    data = str(digits_npz(tmp_path / "clean.npz"))
    args = (str(tmp_path / "w.safetensors"), data, tmp_path / "r")
    first = run_audit(*args, arch=f"{ep}:make", **FAST)
    assert first["stages"]["card"]["data"]["accuracy"] > 0.8
    ep.write_text("from deepaudit.models import build_model\n\n\ndef make():\n"
                  "    model = build_model('mlp', (1, 8, 8), 10)\n"
                  "    model.register_forward_hook(lambda module, inputs, out: -out)\n    return model\n")
    second = run_audit(*args, arch=f"{ep}:make", **FAST)
    assert not any(s.get("resumed") for s in second["stages"].values())
    assert second["stages"]["card"]["data"]["accuracy"] < 0.2
    again = run_audit(*args, arch=f"{ep}:make", **FAST)  # nothing changed: resumed
    assert all(s.get("resumed") for s in again["stages"].values())


@pytest.mark.parametrize("with_card_flag", [False, True])
def test_cache_not_reused_when_the_card_changes(with_card_flag, smoke_zoo, tmp_path):
    folder = card_folder(smoke_zoo, tmp_path / "model")
    spec, card = (str(folder / "weights.safetensors"), folder / "card.json") if with_card_flag else (str(folder), None)
    first = run_audit(spec, "digits", tmp_path / "r", card=card, **FAST)
    assert first["status"] == "complete"
    public = json.loads((folder / "card.json").read_text())
    public["value_range"] = [0.0, 2.0]
    (folder / "card.json").write_text(json.dumps(public))
    second = run_audit(spec, "digits", tmp_path / "r", card=card, **FAST)
    assert not any(s.get("resumed") for s in second["stages"].values())
    assert second["stages"]["card"]["data"]["card"]["value_range"] == [0.0, 2.0]


# -- a failed stage is never a pass ------------------------------------------------------
def test_failed_stage_makes_the_verdict_inconclusive(smoke_zoo, tmp_path, monkeypatch):
    """The black-box stage fails: the verdict names it, does not say "no backdoor found", and the
    command exits 3 (audited, but not everything could be checked)."""
    import deepaudit.audit.vision as stages
    from deepaudit.tools.base import Verdict
    from deepaudit.tools.weight_stats import WeightStats

    def broken(*args, **kwargs):
        raise ValueError("value_range is unusable")

    monkeypatch.setattr(stages, "_perturb", broken)
    monkeypatch.setattr(WeightStats, "audit", lambda self, subject: Verdict(0.1))  # the one detector: clean
    out = tmp_path / "r"
    result = audit_cli(str(smoke_zoo.twin), "--data", "digits", "--out", str(out), "--tools", "weight_stats")
    assert result.exit_code == 3, result.output
    report = report_of(out)
    assert report["stages"]["blackbox"]["status"] == "failed" and report["status"] == "complete"
    verdict = report["verdict"]
    assert verdict["label"] == "inconclusive" and verdict["failed_stages"] == ["blackbox"]
    assert "blackbox" in verdict["summary"] and "INCONCLUSIVE" in result.output


def test_verdict_names_failed_stages():
    from deepaudit.audit.findings import verdict

    stages = {"card": {"status": "done", "data": {}},
              "tool:weight_stats": {"status": "done", "data": {"p_planted": 0.1, "target": 0}},
              "tool:strip": {"status": "failed", "error": "boom"}}
    clear = verdict({k: v for k, v in stages.items() if k != "tool:strip"}, {})
    assert clear["label"] == "no backdoor found" and clear["failed_stages"] == []
    failed = verdict(stages, {})
    assert failed["label"] == "inconclusive" and "tool:strip" in failed["summary"]
    stages["tool:weight_stats"]["data"]["p_planted"] = 0.9
    flagged = verdict(stages, {})  # a finding stands, but the summary says what was not checked
    assert flagged["label"] == "backdoor suspected" and "tool:strip" in flagged["summary"]


# -- output folder, foreign truth, odd names, missing figures, casts ---------------------
def test_out_that_is_a_file_is_refused_before_any_stage(smoke_zoo, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    for out in (taken, taken / "sub"):
        result = audit_cli(str(smoke_zoo.twin), "--data", "digits", "--out", str(out))
        assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output, result.output
        assert " card " not in result.output  # no stage ran
    assert taken.read_text() == "mine"
    with pytest.raises(DeepAuditError, match="not a folder"):
        run_audit(str(smoke_zoo.twin), "digits", taken, **FAST)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_refused_before_any_stage(smoke_zoo, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        result = audit_cli(str(smoke_zoo.twin), "--data", "digits", "--out", str(out))
    finally:
        out.chmod(0o700)
    assert result.exit_code == 2 and "cannot write" in result.output, result.output
    assert " card " not in result.output


def test_foreign_truth_file_is_refused_up_front(smoke_zoo, tmp_path):
    folder = card_folder(smoke_zoo, tmp_path / "model")
    (folder / "truth.json").write_text(json.dumps({"my": "notes"}))
    out = tmp_path / "r"
    result = audit_cli(str(folder), "--data", "digits", "--out", str(out))
    assert result.exit_code == 2 and "truth.json" in result.output, result.output
    report = report_of(out)
    assert report["status"] == "failed" and report["stages"] == {} and "zoo" in report["errors"][0]
    (folder / "truth.json").write_text("{not json")
    assert audit_cli(str(folder), "--data", "digits", "--out", str(tmp_path / "r2")).exit_code == 2


def test_mathtext_in_a_layer_name_is_drawn_as_text(tmp_path):
    """A layer named `$\\x$` is plain text in the plots, on the first run and on the resumed one."""
    (tmp_path / "odd.py").write_text(
        "import torch\n\n\ndef make():\n    model = torch.nn.Sequential()\n"
        "    model.add_module('flat', torch.nn.Flatten())\n"
        "    model.add_module('$\\\\x$', torch.nn.Linear(64, 10))\n    return model\n")
    torch.manual_seed(0)
    save_file({"$\\x$.weight": torch.randn(10, 64) * 0.1, "$\\x$.bias": torch.zeros(10)}, tmp_path / "w.safetensors")
    out = tmp_path / "r"
    for _ in range(2):
        result = audit_cli(str(tmp_path / "w.safetensors"), "--arch", f"{tmp_path / 'odd.py'}:make", "--data", "digits",
                           "--out", str(out), "--tools", "weight_stats")
        assert result.exit_code == 0, result.output
    report = report_of(out)
    assert "$\\x$" in [s["layer"] for s in report["stages"]["card"]["data"]["layers"]]
    assert report["stages"]["card"].get("resumed") and report["status"] == "complete"


def test_localize_finding_without_trigger_success():
    """Zeroing units can leave no input to measure the trigger on (every one already predicted as
    the target): the finding and the plots say so instead of crashing."""
    from deepaudit.audit import vision
    from deepaudit.audit.findings import findings, verdict
    from deepaudit.audit.plots import all_plots

    loc = {"top_units": [["fc1", i] for i in range(10)], "ranked": 20, "k": 5, "trigger_from": "tool:neural_cleanse",
           "target": 3, "trigger_success": {"none": 0.9, "top": None, "random": 0.8}}
    stages = {"tool:act_patch": {"status": "done", "data": {"localize": loc}, "wall_s": 0.1, "forward_passes": 5}}
    found = {f["id"]: f for f in findings(stages, {}, verdict(stages, {}), vision)}["localize:act_patch"]
    assert "not measurable" in found["title"] and found["confidence"] is None and found["plots"] == []
    assert "localize:act_patch" not in all_plots({"stages": stages})


def test_casts_are_said_in_the_report(smoke_zoo, tmp_path):
    """int64 weights and float labels are read, and the report says they were cast; labels that
    are not whole numbers are refused."""
    folder = card_folder(smoke_zoo, tmp_path / "model")
    state = load_file(folder / "weights.safetensors")
    save_file({k: (v * 100).round().to(torch.int64) for k, v in state.items()}, folder / "weights.safetensors")
    out = tmp_path / "r"
    result = audit_cli(str(folder), "--data", str(digits_npz(tmp_path / "clean.npz", np.float32)), "--out", str(out),
                       "--tools", "weight_stats")
    assert result.exit_code == 0, result.output
    notes = report_of(out)["notes"]
    assert any("int64" in n and "float32" in n for n in notes), notes
    assert any("labels" in n and "float32" in n for n in notes), notes
    assert "note:" in result.output and "int64" in (out / "report.html").read_text()
    np.savez(tmp_path / "half.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.array([0, 1.5, 2, 3], np.float32))
    refused = run_audit(str(folder), str(tmp_path / "half.npz"), tmp_path / "r2", **FAST)
    assert refused["status"] == "failed" and "whole" in refused["errors"][0]
