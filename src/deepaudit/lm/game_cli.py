"""``deepaudit lm build | game | leaderboard``: the language-model zoo and its auditing game
(registered on the ``lm`` sub-command; the main CLI imports ``lm_app`` from here)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deepaudit.errors import DeepAuditError
from deepaudit.lm.cli import console, lm_app

SuiteOpt = Annotated[str, typer.Option(help="LM suite: a built-in name (lm, lm-tiny) or a .toml path.")]
ZooOpt = Annotated[Optional[Path], typer.Option("--out", help="Organism folder (default: $DEEPAUDIT_HOME/lmzoo).")]
BaseOpt = Annotated[Optional[str], typer.Option(help="Override the suite's base model: smollm2, tiny, a hub id or a local folder.")]
StoreOpt = Annotated[Optional[Path], typer.Option(help="Results store (default: $DEEPAUDIT_HOME/results.sqlite).")]


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def _report_build(result) -> None:
    rates = ", ".join(f"{k} {v:.2f}" for k, v in result.rates.items())
    colour = {"dropped": "red", "missing": "yellow"}.get(result.status, "green")
    console.print(f"[{colour}]{result.status}[/{colour}] {result.organism_id}  {rates}"
                  + (f"  ({escape(result.reason)})" if result.reason else ""))


@lm_app.command("build")
def build(suite: SuiteOpt = "lm", out: ZooOpt = None, base: BaseOpt = None) -> None:
    """Fine-tune and check every organism of an LM suite (cached: built organisms are not rebuilt)."""
    from deepaudit.game.lm_runner import build_lm_suite

    try:
        with _progress() as progress:
            build_lm_suite(suite, out, base, on_build=_report_build, progress=progress)
    except (DeepAuditError, ValueError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(code=2)


@lm_app.command("game")
def game(suite: SuiteOpt = "lm", out: ZooOpt = None, base: BaseOpt = None, store: StoreOpt = None,
         seed: Annotated[int, typer.Option(help="Seed of the evaluation prompts and the tools.")] = 0,
         trusted: Annotated[int, typer.Option(min=8, help="Trusted prompts handed to the auditors.")] = 100,
         held_out: Annotated[int, typer.Option(min=8, help="Prompts per held-out evaluation set.")] = 64,
         build: Annotated[bool, typer.Option(help="Build missing organisms first (--no-build: audit only those built).")] = True) -> None:
    """Build the suite, run the truth probes, input detectors and trigger search on every organism,
    store the cells (resumable) and print the LM leaderboard."""
    from deepaudit.game.lm_runner import LMGameSizes, run_lm_game
    from deepaudit.paths import default_store_path

    try:
        with _progress() as progress:
            summary = run_lm_game(suite, seed, store, out, base, LMGameSizes(trusted, held_out), _report_build,
                                  lambda oid, what: console.print(f"auditing {oid}") if what == "start" else None,
                                  progress, build)
    except (DeepAuditError, ValueError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(code=2)
    console.print(f"{summary.ran} organisms audited now, {summary.skipped} already in the store")
    for oid, _, error in summary.failed:
        console.print(f"[red]failed[/red] {oid}: {escape(error)}")
    args = ["--suite", suite, "--seed", str(seed), "--trusted", str(trusted), "--held-out", str(held_out)]
    args += (["--base", base] if base else []) + (["--store", str(store)] if store else [])
    args += [] if build else ["--no-build"]
    _print_board(store or default_store_path(), suite, seed, "deepaudit lm game " + shlex.join(args))
    if summary.failed:
        raise typer.Exit(code=1)


@lm_app.command("leaderboard")
def leaderboard(suite: SuiteOpt = "lm", store: StoreOpt = None, seed: int = 0,
                fmt: Annotated[str, typer.Option("--format", help="table, markdown or json.")] = "table") -> None:
    """Print the LM leaderboard from the store (latent knowledge, inputs, detect/trigger)."""
    from deepaudit.paths import default_store_path

    _print_board(store or default_store_path(), suite, seed, None, fmt)


def _print_board(store: Path, suite: str, seed: int, command: str | None, fmt: str = "table") -> None:
    from deepaudit.game.lm_leaderboard import lm_leaderboard, lm_markdown, lm_views

    board = lm_leaderboard(store, suite, seed)
    if fmt == "json":
        print(json.dumps(board, indent=1))
        return
    if fmt == "markdown":
        print(lm_markdown(board))
        return
    views = lm_views(board)
    if not views:
        console.print(f"no cells for lm:{suite} (seed {seed}) in {escape(str(store))}; run `deepaudit lm game` first")
    for title, header, rows in views:
        table = Table(title=title)
        for column in header:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    if command:
        console.print(f"command: {command}")
