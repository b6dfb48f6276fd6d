"""The ``deepaudit`` command line, one module per sub-command: ``zoo`` (build and list
organisms), ``game`` (run the auditing game on any suite, show its leaderboard), ``tools``,
``audit`` (a user's own model), ``lm`` (fetch and convert language models), ``monitor``
(training runs) and ``bench`` (performance benchmarks). Heavy imports happen inside the
commands, so that ``deepaudit --help`` starts at once."""

from __future__ import annotations

import typer

from deepaudit.cli.audit import audit_command
from deepaudit.cli.bench import bench_command
from deepaudit.cli.common import fail
from deepaudit.cli.game import game_app
from deepaudit.cli.lm import lm_app
from deepaudit.cli.monitor import monitor_app
from deepaudit.cli.tools import tools_app
from deepaudit.cli.zoo import zoo_app
from deepaudit.errors import DeepAuditError
from deepaudit.internals.allocator import configure_from_env

app = typer.Typer(help="deepaudit: audit neural networks through their internals, and score the auditing tools.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(zoo_app, name="zoo")
app.add_typer(game_app, name="game")
app.add_typer(tools_app, name="tools")
app.add_typer(monitor_app, name="monitor")
app.add_typer(lm_app, name="lm")
app.command("audit")(audit_command)
app.command("bench", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(bench_command)


@app.callback()
def _setup() -> None:
    """Process set-up for every command: glibc keeps freed memory (deepaudit.internals.allocator;
    DEEPAUDIT_MALLOC=system to keep the system's settings)."""
    try:
        configure_from_env()
    except DeepAuditError as exc:
        fail(exc)


if __name__ == "__main__":
    app()
