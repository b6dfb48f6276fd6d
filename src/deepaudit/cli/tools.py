"""``deepaudit tools list``: every registered tool, with its roles, families, kind and needs."""

from __future__ import annotations

from typing import Annotated

import typer

from deepaudit.cli.common import fail, print_table

tools_app = typer.Typer(help="The auditing tools.", no_args_is_help=True)


@tools_app.command("list")
def tools_list(family: Annotated[str | None, typer.Option(help="Only tools of this family (vision, lm, training).")] = None,
               role: Annotated[str | None, typer.Option(help="Only tools with this role.")] = None) -> None:
    """List the registered tools: name, kind, roles, families, needs and what each does."""
    from deepaudit.tools.base import ROLES
    from deepaudit.tools.registry import tool_specs
    from deepaudit.zoo import FAMILIES

    if family is not None and family not in FAMILIES:
        fail(f"unknown family {family!r}; families: {list(FAMILIES)}")
    if role is not None and role not in ROLES:
        fail(f"unknown role {role!r}; roles: {list(ROLES)}")
    rows = [[s.name, s.kind, ", ".join(s.roles), ", ".join(s.families), ", ".join(s.needs) or "-", s.summary]
            for s in tool_specs(family=family, role=role)]
    print_table(f"{len(rows)} tools", ["tool", "kind", "roles", "families", "needs", "what it does"], rows)
