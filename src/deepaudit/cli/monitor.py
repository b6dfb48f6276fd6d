"""``deepaudit monitor``: list the monitored training runs in the results store, and show one
(a table of its measures and a PNG of their curves)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from deepaudit.cli.common import StoreOpt, console, fail
from deepaudit.errors import DeepAuditError

monitor_app = typer.Typer(help="Training-run monitor: recorded progress measures and their plots.",
                          no_args_is_help=True)


def _open(store: Path | None):
    from deepaudit.monitor import MonitorStore
    from deepaudit.paths import default_store_path

    path = Path(store) if store else default_store_path()
    if not path.exists():
        raise DeepAuditError(f"no results store at {path}; build a zoo or a grokking suite first")
    return MonitorStore(path)


@monitor_app.command("list")
def monitor_list(store: StoreOpt = None,
                 kind: Annotated[str | None, typer.Option(help="Only runs of this kind (zoo, grok, ...).")] = None) -> None:
    """List the monitored runs: id, kind, status, number of recorded points."""
    try:
        db = _open(store)
        runs = db.runs(kind)
        db.close()
    except DeepAuditError as exc:
        fail(exc)
    table = Table(title=f"{len(runs)} monitored runs")
    for column in ("run", "kind", "status", "points"):
        table.add_column(column)
    for run in runs:
        table.add_row(escape(run["run_id"]), run["kind"], run["status"], str(run["points"]))
    console.print(table)


@monitor_app.command("show")
def monitor_show(run: Annotated[str, typer.Argument(help="Run id (see `deepaudit monitor list`).")],
                 store: StoreOpt = None,
                 plot: Annotated[Path | None, typer.Option(help="PNG to write (default: <run>.png here).")] = None,
                 no_plot: Annotated[bool, typer.Option("--no-plot", help="Only print the table.")] = False) -> None:
    """Print first, last, min and max of every measure of a run, and plot the curves as a PNG."""
    from deepaudit.monitor.plot import plot_run

    try:
        db = _open(store)
        info, series = db.run(run), db.series(run)
        db.close()
    except DeepAuditError as exc:
        fail(exc)
    table = Table(title=f"run {escape(run)} ({info['kind']}, {info['status']})")
    for column in ("measure", "points", "first", "last", "min", "max"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for name, (steps, values) in series.items():
        table.add_row(escape(name), str(len(steps)),
                      *(f"{v:.4g}" for v in (values[0], values[-1], np.nanmin(values), np.nanmax(values))))
    console.print(table)
    if not no_plot:
        path = plot or Path(re.sub(r"[^A-Za-z0-9_.-]", "_", run) + ".png")
        try:
            console.print(f"plot written to {plot_run(series, path, title=run)}")
        except OSError as exc:
            fail(f"cannot write the plot {path}: {exc}")
