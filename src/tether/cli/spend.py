"""`tether spend`: what the tenant spent on a UTC day, in all and by workflow, against
its daily budgets (ADR 92). A task's own spend is in `tether status ID`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from tether.cli.common import (
    EXIT_USAGE,
    CLIError,
    console,
    fitted_table,
    handle_errors,
    print_json,
    spend_text,
)
from tether.cli.operations import Operations, run_with
from tether.cli.options import JsonOpt, resolve, takes_global_options
from tether.cli.root import cli
from tether.models import DaySpend
from tether.models.budgets import check_day


@cli.command()
@takes_global_options
@handle_errors
def spend(
    ctx: typer.Context,
    day: Annotated[
        str | None,
        typer.Option("--day", "-d", metavar="YYYY-MM-DD", help="The UTC day (default: today)."),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Show the tenant's spend on a UTC day: dollars and tokens spent, reserved by
    running steps, and the daily limits, in all and per workflow."""
    env = resolve(ctx)
    if day is not None:
        try:
            check_day(day)
        except ValueError as exc:
            raise CLIError(f"--day: {exc}", EXIT_USAGE) from None

    async def go(ops: Operations) -> DaySpend:
        return await ops.day_spend(day)

    found = run_with(env, go)
    if json:
        print_json(found.to_json())
        return
    rows = [["all", spend_text(found.total)]]
    rows += [[escape(name), spend_text(line)] for name, line in found.workflows.items()]
    title = f"spend of {escape(found.tenant)} on {found.day} (UTC)"
    console.print(fitted_table(("workflow", "spent"), rows, flexible=1, title=title))
