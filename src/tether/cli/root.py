"""The root Typer app. Command modules register on `cli` when imported (see
`tether.cli.COMMAND_MODULES`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

import tether
from tether.cli.options import (
    ApiKeyOpt,
    AppOpt,
    DatabaseOpt,
    GlobalOptions,
    ServerOpt,
    TenantOpt,
    TokenOpt,
)


def _without_bool_noise(params: list[Any]) -> list[Any]:
    # Typer's help shows a type for every option, `<bool>` for flags too (--help
    # included); an empty metavar says a flag takes no value.
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """A command whose help shows flags without a type."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_bool_noise(super().get_params(ctx))


class Group(TyperGroup):
    """A group whose help shows flags without a type."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_bool_noise(super().get_params(ctx))


class App(typer.Typer):
    """`typer.Typer` whose commands and groups use `Command` and `Group`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        kwargs.setdefault("add_completion", False)
        kwargs.setdefault("rich_markup_mode", "rich")
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)


cli = App(
    name="tether",
    help="Tether: durable workflows for long-running AI-agent work.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tether {tether.__version__}")
        raise typer.Exit()


@cli.callback()
def root(
    ctx: typer.Context,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    api_key: ApiKeyOpt = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Run workers, submit and follow tasks, decide approvals, migrate the database, or
    try the demo. With --server, task and approval commands drive a server over HTTP."""
    ctx.obj = GlobalOptions(app, database_url, tenant, server, token, api_key)
