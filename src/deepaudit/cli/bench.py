"""``deepaudit bench NAME [OPTIONS]``: run a performance benchmark."""

from __future__ import annotations

from typing import Annotated

import typer

from deepaudit.cli.common import fail
from deepaudit.errors import DeepAuditError


def bench_command(ctx: typer.Context,
                  name: Annotated[str, typer.Argument(help="capture, scaling or stages; options after the name go to it "
                                                           "(deepaudit bench NAME -- --help lists them).")]) -> None:
    """Run a performance benchmark; print its figures and the command that reproduces them."""
    from deepaudit.bench import run_benchmark

    try:
        run_benchmark(name, list(ctx.args[1:] if ctx.args[:1] == ["--"] else ctx.args))
    except (DeepAuditError, ValueError) as exc:
        fail(exc)
