"""``deepaudit grok``: build the grokking organisms (and controls), then score the forecast and
reverse-engineer tracks on them. Results go to the results store; plots to ``--plots``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from deepaudit.errors import DeepAuditError

grok_app = typer.Typer(help="Known-algorithm organisms: grokking modular addition; forecast and reverse-engineer tracks.",
                       no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 160)

PresetOpt = Annotated[str, typer.Option(help="full (p=59, minutes), tiny (p=13, seconds: the tests) or nanda (p=113, the paper's size).")]
SeedsOpt = Annotated[Optional[list[int]], typer.Option("--seed", help="Seeds (repeat); each adds an organism and its two controls.")]
ZooOpt = Annotated[Optional[Path], typer.Option("--zoo", help="Organism folder (default: $DEEPAUDIT_HOME/zoo).")]
StoreOpt = Annotated[Optional[Path], typer.Option("--store", help="Results store (default: $DEEPAUDIT_HOME/results.sqlite).")]


def _paths(zoo: Path | None, store: Path | None) -> tuple[Path, Path]:
    from deepaudit.paths import default_store_path, default_zoo_dir

    return (Path(zoo) if zoo else default_zoo_dir()), (Path(store) if store else default_store_path())


def _manifest(zoo: Path, preset: str, seeds: list[int]) -> dict:
    from deepaudit.zoo.grokking import grok_suite_name

    path = zoo / "suites" / f"{grok_suite_name(preset)}-{'-'.join(map(str, seeds))}.json"
    if not path.exists():
        raise DeepAuditError(f"no grokking suite at {path}; run `deepaudit grok run --preset {preset}` first")
    return json.loads(path.read_text())


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(code=2)


def _plots(zoo: Path, store: Path, manifest: dict, out: Path) -> None:
    from deepaudit.internals.fourier import frequency_norms
    from deepaudit.monitor import MonitorStore
    from deepaudit.monitor.plot import plot_frequencies, plot_run
    from deepaudit.subject import load_model
    from deepaudit.zoo import read_truth

    db = MonitorStore(store)
    try:
        for oid in manifest["organisms"]:
            truth = read_truth(zoo / oid)
            series = db.series(truth["monitor_run"])
            keep = {n: s for n, s in series.items() if n.endswith(("loss", "acc")) or n in (
                "weight_norm/total", "fourier/embed_gini", "posthoc/key_share", "probe/sum_mod_p",
                "act/mlp_act/rank", "grad_norm/head", "update/head")}
            name = f"grok-{manifest['preset']}-{truth['role']}-seed{truth['spec']['seed']}"
            plot_run(keep, out / f"{name}.png", title=f"{truth['role']}: {name}")
            model = load_model(zoo / oid)
            plot_frequencies(frequency_norms(model.embed.weight[: truth["spec"]["p"]]), truth["key_frequencies"],
                             out / f"{name}-frequencies.png", title=f"{truth['role']}: key frequencies {truth['key_frequencies']}")
    finally:
        db.close()
    console.print(f"plots written to {out}/")


@grok_app.command("run")
def grok_run(preset: PresetOpt = "full", seeds: SeedsOpt = None, jobs: Annotated[int, typer.Option("--jobs", "-j", min=1)] = 2,
             zoo: ZooOpt = None, store: StoreOpt = None,
             plots: Annotated[Optional[Path], typer.Option(help="Folder for PNG plots of each run.")] = None) -> None:
    """Build (or reuse) the grokking organism and its controls per seed, recorded by the
    monitor; print what each run did (key frequencies, phases, accuracies, wall time)."""
    from deepaudit.zoo import read_truth
    from deepaudit.zoo.grokking import build_grok_suite

    seeds = seeds or [0]
    zoo, store = _paths(zoo, store)
    try:
        with console.status(f"training grokking suite '{preset}' (seeds {seeds})"):
            manifest = build_grok_suite(preset, tuple(seeds), zoo, store, jobs=jobs)
        if plots:
            _plots(zoo, store, manifest, plots)
    except (DeepAuditError, ValueError) as exc:
        _fail(exc)
    table = Table(title=f"grokking suite '{preset}', seeds {seeds}")
    for column in ("organism", "role", "key frequencies", "train acc", "test acc", "memorised", "cleanup",
                   "grokked", "train s"):
        table.add_column(column)
    for oid in manifest["organisms"]:
        t = read_truth(zoo / oid)
        ph = t["phases"]
        table.add_row(oid, t["role"], str(t["key_frequencies"]), f"{t['final_train_acc']:.3f}",
                      f"{t['final_test_acc']:.3f}", str(ph["memorised_step"]), str(ph["cleanup_step"]),
                      str(ph["grok_step"]), f"{t['train_wall_s']:.0f}")
    console.print(table)


@grok_app.command("reverse")
def grok_reverse(preset: PresetOpt = "full", seeds: SeedsOpt = None, zoo: ZooOpt = None, store: StoreOpt = None,
                 tool: Annotated[str, typer.Option(help="Reverse-engineering tool.")] = "fourier_program") -> None:
    """Reverse-engineer each organism into a program without a neural network; score its
    agreement with the model on all p^2 inputs."""
    from deepaudit.game.reverse import run_reverse
    from deepaudit.zoo.grokking import grok_suite_name

    seeds = seeds or [0]
    zoo, store = _paths(zoo, store)
    try:
        rows = run_reverse(zoo, _manifest(zoo, preset, seeds)["organisms"], store, grok_suite_name(preset),
                           tool=tool)
    except (DeepAuditError, ValueError) as exc:
        _fail(exc)
    table = Table(title=f"reverse-engineer track: {tool} on '{preset}'")
    for column in ("organism", "role", "true keys", "found", "agreement", "program acc", "model acc", "jaccard"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["organism_id"], r["role"], str(r["true_keys"]), str(list(r["program"]["frequencies"])),
                      f"{r['agreement']:.4f}", f"{r['program_accuracy']:.4f}", f"{r['model_accuracy']:.4f}",
                      f"{r['frequency_jaccard']:.2f}")
    console.print(table)
    console.print("agreement: share of all p^2 inputs where the program's answer equals the model's.")


@grok_app.command("forecast")
def grok_forecast(preset: PresetOpt = "full", seeds: SeedsOpt = None, zoo: ZooOpt = None, store: StoreOpt = None,
                  forecasters: Annotated[Optional[list[str]], typer.Option("--forecaster", help="Forecasters (repeat); default all.")] = None) -> None:
    """Score forecasters of the test-accuracy jump on the monitored runs: lead time over
    watching the test loss, and false alarms on runs that never generalise."""
    from deepaudit.game.forecast import run_forecast
    from deepaudit.zoo.grokking import grok_suite_name

    seeds = seeds or [0]
    zoo, store = _paths(zoo, store)
    try:
        results = run_forecast(zoo, _manifest(zoo, preset, seeds)["organisms"], store, grok_suite_name(preset),
                               forecasters=forecasters)
    except (DeepAuditError, ValueError) as exc:
        _fail(exc)
    for name, result in results.items():
        table = Table(title=f"forecast track: {name} on '{preset}' — {result['summary']}")
        for column in ("organism", "role", "alarm", "predicted jump", "jump", "test-loss alarm", "lead", "false alarm"):
            table.add_column(column)
        for r in result["runs"]:
            table.add_row(r["organism_id"], r["role"], str(r["alarm_step"]), str(r["predicted_jump"]),
                          str(r["jump_step"]), str(r["baseline_alarm"]), str(r.get("lead_steps", "-")),
                          str(r.get("false_alarm", "-")))
        console.print(table)
    console.print("lead: steps by which the alarm precedes the test-loss watcher's (positive: earlier).")
