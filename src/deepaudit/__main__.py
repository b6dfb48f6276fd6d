"""``python -m deepaudit``: the same command line as ``deepaudit``."""

from deepaudit.cli import app

app(prog_name="deepaudit")
