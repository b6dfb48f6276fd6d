"""``deepaudit zoo``: list the built-in suites of every family, and build (or reuse) a suite's
organisms, printing what each build check measured."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from deepaudit.cli.common import (
    ExecutorOpt,
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

zoo_app = typer.Typer(help="Model organisms with planted, sealed ground truth.", no_args_is_help=True)


def build_with_progress(suite: str, seed: int, zoo: Path | None, store: Path | None, jobs: int, executor: str,
                        ray_address: str | None) -> dict[str, Any]:
    """Build a suite with a progress bar; report what was dropped."""
    from deepaudit.executors import make_executor
    from deepaudit.zoo import build_suite, load_suite

    pool = make_executor(executor, jobs, ray_address)
    with progress() as bar:
        task = bar.add_task(f"building zoo '{suite}'", total=load_suite(suite).planned(seed))
        manifest = build_suite(suite, seed, zoo, store, jobs, progress=lambda _r: advance(bar, task), executor=pool)
    for item in manifest["dropped"]:
        console.print(f"[yellow]dropped[/yellow] {item['organism_id']}: {escape(item['reason'])}")
    return manifest


@zoo_app.command("build")
def zoo_build(suite: SuiteOpt = "quick", seed: SeedOpt = 0, zoo: ZooOpt = None, store: StoreOpt = None,
              jobs: JobsOpt = 2, executor: ExecutorOpt = "local", ray_address: RayAddressOpt = None) -> None:
    """Build (or reuse) every organism of a suite, check each at build time, and print a line per
    organism with what its check measured (from its sealed truth: this is the attacker's side)."""
    from deepaudit.paths import default_zoo_dir
    from deepaudit.zoo import load_suite, read_truth

    try:
        manifest = build_with_progress(suite, seed, zoo, store, jobs, executor, ray_address)
        fam = load_suite(suite).family
        folder = Path(zoo) if zoo else default_zoo_dir()
        rows = [{"organism": oid, **fam.describe(read_truth(folder / oid))} for oid in manifest["organisms"]]
    except (DeepAuditError, ValueError, OSError) as exc:
        fail(exc)
    if rows:
        header = list(dict.fromkeys(k for row in rows for k in row))
        print_table(f"suite '{manifest['suite']}' ({manifest['family']}), seed {seed}", header,
                    [[str(row.get(k, "")) for k in header] for row in rows])
    console.print(f"{len(manifest['organisms'])} organisms ready; {len(manifest['dropped'])} dropped.")


@zoo_app.command("list")
def zoo_list() -> None:
    """List the built-in suites of every family, with their sizes."""
    from deepaudit.zoo import available_suites, load_suite

    rows = []
    try:
        for name in available_suites():
            suite = load_suite(name)
            rows.append([name, suite.family.name, str(suite.planned(0)), ", ".join(suite.family.slices) or "-",
                         suite.description])
    except DeepAuditError as exc:
        fail(exc)
    print_table("built-in suites", ["suite", "family", "organisms", "--by", "description"], rows)


@zoo_app.command("export")
def zoo_export(out: Annotated[Path, typer.Argument(help="A new folder for the public organisms.")],
               suite: SuiteOpt = "quick", seed: SeedOpt = 0, zoo: ZooOpt = None, jobs: JobsOpt = 2) -> None:
    """Write the public part of a suite's organisms (card without id, weights; never the truth)
    into OUT/<id>/, built first if needed: what can be handed to an auditor alone."""
    from deepaudit.game.seal import expose
    from deepaudit.paths import default_zoo_dir

    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        fail(f"{out} exists and is not an empty folder: choose a new one")
    try:
        manifest = build_with_progress(suite, seed, zoo, None, jobs, "local", None)
        folder = Path(zoo) if zoo else default_zoo_dir()
        for oid in manifest["organisms"]:
            expose(folder / oid, out / oid)
    except (DeepAuditError, OSError) as exc:
        fail(exc)
    console.print(f"{len(manifest['organisms'])} public organisms written to {escape(str(out))} (no truth).")
