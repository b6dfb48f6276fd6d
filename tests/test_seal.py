"""The seal between tools and referee (deepaudit.game.seal): a cheating tool that tries every
route to the truth we know of (the environment, the default zoo path, the home folder, the
working directory, parent frames, /proc, /tmp, objects in memory, the card) scores at chance in
the game, and scores perfectly when run in the referee's own process, which shows that it would
notice a leak."""

from __future__ import annotations

import importlib.util
import sys
from contextlib import closing
from pathlib import Path

import pytest

from deepaudit.game.referee import ToolRun, ask_and_score
from deepaudit.game.runner import run_game
from deepaudit.game.seal import expose, namespace_prefix
from deepaudit.game.store import Store
from deepaudit.tools.registry import TOOLS
from deepaudit.zoo import family
from deepaudit.zoo.folder import public_files, truth_path

PLUGIN = Path(__file__).parent / "plugins" / "cheater.py"


@pytest.fixture
def cheater():
    """Register the cheating tool for one test, then remove it (it must not join other runs)."""
    spec = importlib.util.spec_from_file_location("cheater_plugin", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cheater_plugin"] = module
    spec.loader.exec_module(module)
    yield "cheater"
    TOOLS._entries.pop("cheater", None)
    sys.modules.pop("cheater_plugin", None)


def test_cheater_reads_the_truth_when_not_sealed(smoke_zoo, cheater):
    """Control: in the referee's process the cheater finds the truth and scores perfectly."""
    for folder, planted in ((smoke_zoo.trojan, 1.0), (smoke_zoo.twin, 0.0)):
        outcome = ask_and_score(family("vision").open(folder, 0, 64, {}), ToolRun.of(cheater), 0, "vision")
        assert outcome.status == "done", outcome.error
        assert outcome.scores["detect"]["p_planted"] == planted and outcome.answer["evidence"]["routes"]


def test_cheater_scores_at_chance_in_the_game(smoke_zoo, cheater, tmp_path):
    """Sealed: no route reaches the truth, on any organism."""
    if not namespace_prefix():
        pytest.skip("no Linux namespaces here: a search of the file system is not sealed (see deepaudit.game.seal)")
    summary = run_game("smoke", tools=[cheater], store=tmp_path / "r.sqlite", zoo_dir=smoke_zoo.dir)
    assert summary.ran == 3 and not summary.failed, summary
    with closing(Store(tmp_path / "r.sqlite")) as store:
        cells = [c for c in store.cells(suite="smoke") if c["tool"] == cheater and c["track"] == "detect"]
    assert len(cells) == 3
    for cell in cells:
        assert cell["answer"]["evidence"]["routes"] == [], cell["answer"]
        assert cell["scores"]["p_planted"] == 0.5


def test_the_public_folder_holds_no_truth_and_the_card_no_id(smoke_zoo, tmp_path):
    """What the worker is handed: the card (without the organism's id) and the weights, nothing else."""
    assert truth_path(smoke_zoo.trojan).is_file()
    assert [p.name for p in public_files(smoke_zoo.trojan)] == ["card.json", "weights.safetensors"]
    expose(smoke_zoo.trojan, tmp_path / "public")
    assert sorted(p.name for p in (tmp_path / "public").iterdir()) == ["card.json", "weights.safetensors"]
    assert "organism_id" not in (tmp_path / "public" / "card.json").read_text()


def test_zoo_export_writes_the_public_part_only(smoke_zoo, tmp_path):
    """`deepaudit zoo export` writes each organism's card (no id) and weights, and no truth; a
    folder that is not empty is refused with exit 2."""
    from typer.testing import CliRunner

    from deepaudit.cli import app

    out = tmp_path / "public"
    result = CliRunner().invoke(app, ["zoo", "export", str(out), "--suite", "smoke", "--zoo", str(smoke_zoo.dir)])
    assert result.exit_code == 0, result.output
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == sorted(f"{oid}/{name}" for oid in smoke_zoo.manifest["organisms"]
                           for name in ("card.json", "weights.safetensors"))
    assert not any("truth" in f or "sealed" in f for f in files)
    again = CliRunner().invoke(app, ["zoo", "export", str(out), "--suite", "smoke", "--zoo", str(smoke_zoo.dir)])
    assert again.exit_code == 2 and "not an empty folder" in again.output


def test_a_worker_exits_when_its_referee_goes_away():
    """Closing the read end of the reply pipe (the referee died) ends the worker at once, even
    while it would wait for jobs: an orphaned worker must not go on computing."""
    import subprocess
    import sys

    worker = subprocess.Popen([sys.executable, "-m", "deepaudit.game.worker"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert worker.poll() is None
        worker.stdout.close()
        assert worker.wait(timeout=60) == 1  # stdin is still open: only the watchdog can end it
    finally:
        worker.kill()
        worker.stdin.close()


def test_a_job_interrupted_mid_answer_retires_its_worker(smoke_zoo, monkeypatch):
    """Ctrl-C (or a cancelled Ray task) while the worker answers a job: the worker may still be on
    that job and would answer the next one with its "done", so it is stopped, and the next job
    gets a fresh worker that answers it."""
    from deepaudit.game import seal

    asks = [("weight_stats", {}, ("detect",))]
    reply, = seal.ask_sealed("vision", smoke_zoo.trojan, asks, {}, 0, 64, {})
    first = seal._worker  # the worker this referee process uses
    assert reply["status"] == "done" and first is not None and first.alive()
    monkeypatch.setattr(seal.Worker, "run", lambda self, job: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        list(seal.ask_sealed("vision", smoke_zoo.trojan, asks, {}, 0, 64, {}))
    assert not first.alive()
    monkeypatch.undo()
    reply, = seal.ask_sealed("vision", smoke_zoo.trojan, asks, {}, 0, 64, {})
    assert reply["status"] == "done" and seal._worker is not first


def test_shadows_a_worker_trains_are_kept_for_later_workers(smoke_zoo, deepaudit_home):
    """A sealed worker's shadow models (built from the card and the budget alone) are copied into
    the shared home after its job, so a fresh worker reads them instead of training them again."""
    from deepaudit.game import seal

    asks = [("nc_reference", {"steps": 20, "shadows": 2}, ("detect",))]
    budget = 40  # a budget no other test uses: its shadow set is not in the shared cache yet
    first, = seal.ask_sealed("vision", smoke_zoo.trojan, asks, {}, 0, budget, {})
    assert first["status"] == "done", first
    assert list((deepaudit_home / "cache" / "shadows").glob("*/meta.json"))
    seal._worker.kill()  # the next job gets a fresh worker, with a fresh private home
    again, = seal.ask_sealed("vision", smoke_zoo.trojan, asks, {}, 0, budget, {})
    built = [r["values"]["detect"]["evidence"]["shadow_build_cpu_s"] for r in (first, again)]
    assert built[0] > 0 and built[1] == 0, built
