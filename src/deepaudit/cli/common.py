"""What every sub-command shares: the console, the option names (``--zoo``, ``--store``,
``--seed``, ``--jobs``, ``--executor``, ...), progress bars, and the one way to fail: a message
naming the problem, exit status 2, no traceback."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)


class Format(StrEnum):
    table = "table"
    markdown = "markdown"
    json = "json"


SuiteOpt = Annotated[str, typer.Option("--suite", "-s", help="A built-in suite (`deepaudit zoo list`) or a .toml path.")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0,
                                      help="Suite seed; another seed is a held-out split of the same suite.")]
ZooOpt = Annotated[Path | None, typer.Option("--zoo", help="Organism cache folder (default: $DEEPAUDIT_HOME/zoo).")]
StoreOpt = Annotated[Path | None, typer.Option("--store", help="Results store (default: $DEEPAUDIT_HOME/results.sqlite).")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes (or Ray CPUs).")]
ExecutorOpt = Annotated[str, typer.Option("--executor", help="Where jobs run: local (--jobs processes) or ray.")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", help="Ray cluster to join (e.g. auto, ray://host:10001); default: a local Ray with --jobs CPUs.")]
BudgetOpt = Annotated[int | None, typer.Option(
    "--budget", help="Trusted inputs handed to each tool (default: the suite's, else its family's).")]
FormatOpt = Annotated[Format, typer.Option("--format", help="table, markdown or json.")]


def fail(exc: BaseException | str) -> NoReturn:
    """Print the problem and exit with status 2."""
    console.print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(code=2)


def progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def advance(bar: Progress, task: TaskID) -> None:
    """One more done; a total that was a plan (spares are built only when needed) grows with it."""
    current = bar.tasks[task]
    if current.total is not None and current.completed + 1 > current.total:
        bar.update(task, total=current.completed + 1)
    bar.advance(task)


def _numeric(text: str) -> bool:
    return text.split("\n")[0].replace(".", "", 1).replace("-", "", 1).isdigit() or text in ("-", "")


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A table with numeric columns right-aligned and text columns left-aligned."""
    table = Table(title=title)
    for i, column in enumerate(header):
        numeric = i > 0 and all(_numeric(str(row[i])) for row in rows)
        table.add_column(column, overflow="fold", justify="right" if numeric else "left", no_wrap=i == 0)
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))
    console.print(table)
