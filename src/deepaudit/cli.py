"""The ``deepaudit`` command line: build zoos, run the auditing game, show the leaderboard."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deepaudit.audit.command import audit_command
from deepaudit.errors import DeepAuditError
from deepaudit.internals.allocator import configure_from_env
from deepaudit.grok_cli import grok_app
from deepaudit.lm.game_cli import lm_app
from deepaudit.monitor.cli import monitor_app

app = typer.Typer(help="deepaudit: audit neural networks through their internals, and score the auditing tools.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
zoo_app = typer.Typer(help="Model organisms with planted, sealed ground truth.", no_args_is_help=True)
game_app = typer.Typer(help="The auditing game: run tools on a zoo, score them, rank them.", no_args_is_help=True)
tools_app = typer.Typer(help="The auditing tools.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
app.add_typer(game_app, name="game")
app.add_typer(tools_app, name="tools")
app.add_typer(monitor_app, name="monitor")
app.add_typer(grok_app, name="grok")
app.add_typer(lm_app, name="lm")
app.command("audit")(audit_command)


@app.callback()
def _setup() -> None:
    """Process set-up for every command: glibc keeps freed memory (deepaudit.internals.allocator;
    DEEPAUDIT_MALLOC=system to keep the system's settings)."""
    try:
        configure_from_env()
    except DeepAuditError as exc:
        _fail(exc)


console = Console(width=None if sys.stdout.isatty() else 160)


class Format(str, Enum):
    table = "table"
    markdown = "markdown"
    json = "json"


SuiteOpt = Annotated[str, typer.Option("--suite", "-s", help="Built-in suite (smoke, quick, standard) or a .toml path.")]
SeedOpt = Annotated[int, typer.Option(help="Suite seed; another seed is a held-out split of the same suite.")]
ZooOpt = Annotated[Optional[Path], typer.Option("--zoo", help="Organism cache folder (default: $DEEPAUDIT_HOME/zoo).")]
StoreOpt = Annotated[Optional[Path], typer.Option("--store", help="Results store (default: $DEEPAUDIT_HOME/results.sqlite).")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes.")]
ExecutorOpt = Annotated[str, typer.Option("--executor", help="Where jobs run: local (--jobs processes) or ray.")]
RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to join (e.g. auto, ray://host:10001); default: a local Ray with --jobs CPUs.")]


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(code=2)


def _build_with_progress(suite: str, seed: int, out: Path | None, jobs: int, executor: str = "local",
                         ray_address: str | None = None) -> dict:
    from deepaudit.executors import make_executor
    from deepaudit.zoo import build_suite
    from deepaudit.zoo.suite import spec_count

    pool = make_executor(executor, jobs, ray_address)
    with _progress() as progress:
        task = progress.add_task(f"building zoo '{suite}'", total=spec_count(suite, seed))
        return build_suite(suite, seed, out, jobs=jobs, progress=lambda _r: progress.advance(task), executor=pool)


def _report_dropped(dropped: list[dict]) -> None:
    for item in dropped:
        spec = item["spec"]
        console.print(f"[yellow]dropped[/yellow] {item['organism_id']} ({spec['dataset']} {spec['arch']} "
                      f"{spec['implant']}{' evasive' if spec['evasive'] else ''}): {escape(item['reason'])}")


@zoo_app.command("build")
def zoo_build(suite: SuiteOpt = "quick", seed: SeedOpt = 0,
              out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: $DEEPAUDIT_HOME/zoo).")] = None,
              jobs: JobsOpt = 2, executor: ExecutorOpt = "local", ray_address: RayAddressOpt = None) -> None:
    """Build (or reuse) every organism of a suite and check each implant at build time."""
    try:
        manifest = _build_with_progress(suite, seed, out, jobs, executor, ray_address)
    except (DeepAuditError, ValueError) as exc:
        _fail(exc)
    console.print(f"{len(manifest['organisms'])} organisms ready; {len(manifest['dropped'])} dropped.")
    _report_dropped(manifest["dropped"])


@zoo_app.command("list")
def zoo_list() -> None:
    """List the built-in suites and their sizes."""
    from deepaudit.zoo import available_suites, load_suite
    from deepaudit.zoo.suite import spec_count

    for name in available_suites():
        console.print(f"[bold]{name}[/bold] ({spec_count(name)} organisms): {load_suite(name).description}")


@tools_app.command("list")
def tools_list() -> None:
    """List the registered tools and the protocols each implements."""
    from deepaudit.tools import TOOLS, roles

    for name, cls in TOOLS.items():
        doc = (sys.modules[cls.__module__].__doc__ or "").strip().split("\n")[0]
        console.print(f"[bold]{name}[/bold] [{', '.join(roles(name))}] {doc}")


def _print_board(board: dict, fmt: Format) -> None:
    from deepaudit.game.leaderboard import to_json, to_markdown, views

    if fmt is Format.json:
        print(to_json(board))
        return
    if fmt is Format.markdown:
        print(to_markdown(board))
        return
    for title, columns, rows in views(board, sep="\n"):
        table = Table(title=f"{title}: suite '{board['suite']}' seed {board['seed']}, {board['organisms']} organisms, "
                            f"budget {board['rows'][0]['budget']} clean inputs")
        for column in columns:
            table.add_column(column, overflow="fold", justify="left" if column in ("tool", "kind") else "right")
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
    console.print(escape("Scores: value [bootstrap 95% CI over organisms]; skyline = supervised meta-classifier "
                         "(cross-fitted on labelled organisms: a reference, not a tool); inputs AUROC: mean ± sd "
                         "over planted organisms; cost: mean wall seconds and examples forwarded per organism."))


@game_app.command("run")
def game_run(suite: SuiteOpt = "quick", seed: SeedOpt = 0,
             tools: Annotated[Optional[list[str]], typer.Option("--tools", "-t", help="Tools to run (repeat); default all.")] = None,
             budget: Annotated[int, typer.Option(help="Clean inputs handed to each tool.")] = 256,
             jobs: JobsOpt = 2, zoo: ZooOpt = None, store: StoreOpt = None,
             fmt: Annotated[Format, typer.Option("--format", help="Leaderboard format.")] = Format.table,
             by: Annotated[Optional[str], typer.Option(help="Also slice scores by implant, dataset, arch, mapping or evasive.")] = None,
             executor: ExecutorOpt = "local", ray_address: RayAddressOpt = None) -> None:
    """Build the suite, run every tool on every organism, score them, print the leaderboard.
    Interrupt at any time: finished cells are kept, and the same command resumes."""
    from deepaudit.game import leaderboard, run_game
    from deepaudit.paths import default_store_path

    try:
        manifest = _build_with_progress(suite, seed, zoo, jobs, executor, ray_address)
        _report_dropped(manifest["dropped"])
        with _progress() as progress:
            task = progress.add_task("auditing", total=None)
            summary = run_game(suite, seed, tools, store, zoo, budget, jobs,
                               on_plan=lambda todo, _done: progress.update(task, total=todo),
                               on_cell=lambda _k, _s: progress.advance(task), executor=executor,
                               ray_address=ray_address)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/yellow] finished cells are saved; run the same command to resume.")
        raise typer.Exit(code=130)
    except (DeepAuditError, ValueError) as exc:
        _fail(exc)
    console.print(f"{summary.ran} cells run, {summary.skipped} already in the store, {len(summary.failed)} failed.")
    for organism, tool, message in summary.failed:
        console.print(f"[red]failed[/red] {tool} on {organism}: {escape(message)}")
    _print_board(leaderboard(store or default_store_path(), summary.suite, seed, by, budget), fmt)


@game_app.command("leaderboard")
def game_leaderboard(suite: SuiteOpt = "quick", seed: SeedOpt = 0, store: StoreOpt = None,
                     budget: Annotated[Optional[int], typer.Option(help="Clean-data budget of the runs to show, if the store holds several.")] = None,
                     fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
                     by: Annotated[Optional[str], typer.Option(help="Slice by implant, dataset, arch, mapping or evasive.")] = None) -> None:
    """Print the leaderboard of a suite from the results store (tools x tracks, CIs, cost)."""
    from deepaudit.game import leaderboard
    from deepaudit.paths import default_store_path

    try:
        _print_board(leaderboard(store or default_store_path(), suite, seed, by, budget), fmt)
    except (DeepAuditError, ValueError) as exc:
        _fail(exc)


@app.command("bench", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context,
          name: Annotated[str, typer.Argument(help="capture, scaling or stages; options after the name go to it "
                                                   "(deepaudit bench NAME -- --help lists them).")]) -> None:
    """Run a performance benchmark; print its figures and the command that reproduces them."""
    from deepaudit.bench import run_benchmark

    try:
        run_benchmark(name, list(ctx.args[1:] if ctx.args[:1] == ["--"] else ctx.args))
    except (DeepAuditError, ValueError) as exc:
        _fail(exc)


if __name__ == "__main__":
    app()
