"""The root Typer app. Command modules register on `cli` when imported (see
`tether.cli.COMMAND_MODULES`)."""

from __future__ import annotations

import typer

from tether.cli.common import AppOpt, DatabaseOpt, GlobalOptions, TenantOpt

cli = typer.Typer(
    name="tether",
    help="Tether: durable workflows for long-running AI-agent work.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@cli.callback()
def root(
    ctx: typer.Context,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Run workers, submit and follow tasks, migrate the database, or try the demo."""
    ctx.obj = GlobalOptions(app=app, database_url=database_url, tenant=tenant)
