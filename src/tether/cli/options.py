"""The CLI's global options and how one command's settings are resolved.

Global options are accepted before the command (`tether --server URL list`) and after
it (`tether list --server URL`); the value after the command wins. Each falls back to
its `TETHER_*` environment variable, then the config file, then the default
(`tether.config.load_settings`). The task and approval commands take all of them through
`takes_global_options`; the others (`worker`, `server`, `migrate`, ...) declare the few
they use.

With a server (`--server`, `TETHER_SERVER`) a command goes through the HTTP API with
the given credential (`--token` or `--api-key`); without one it opens the database.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Annotated, ParamSpec, TypeVar

import typer

from tether.config import Settings, load_settings
from tether.errors import ConfigError

P = ParamSpec("P")
T = TypeVar("T")

GLOBAL_PANEL = "Global options"
MIN_SHORT_ID = 4
"""Fewest characters of an id a command accepts."""

AppOpt = Annotated[
    str | None,
    typer.Option(
        "--app",
        metavar="MODULE:ATTR",
        help="The Tether app as pkg.module:attr (env TETHER_APP).",
        show_default=False,
        rich_help_panel=GLOBAL_PANEL,
    ),
]
DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="URL",
        help="sqlite:///path or postgresql://... (env TETHER_DATABASE_URL; "
        "default sqlite:///tether.db).",
        show_default=False,
        rich_help_panel=GLOBAL_PANEL,
    ),
]
TenantOpt = Annotated[
    str | None,
    typer.Option(
        "--tenant",
        metavar="NAME",
        help="Tenant to act as (env TETHER_TENANT; default 'default'). Not with --server: "
        "the credential names it.",
        show_default=False,
        rich_help_panel=GLOBAL_PANEL,
    ),
]
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        metavar="URL",
        help="Drive this Tether server over its HTTP API instead of opening the database "
        "(env TETHER_SERVER).",
        show_default=False,
        rich_help_panel=GLOBAL_PANEL,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="JWT",
        help="Bearer token for --server (env TETHER_TOKEN).",
        show_default=False,
        rich_help_panel=GLOBAL_PANEL,
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        metavar="KEY",
        help="API key for --server, instead of a token (env TETHER_API_KEY).",
        show_default=False,
        rich_help_panel=GLOBAL_PANEL,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@dataclass
class GlobalOptions:
    """Global options as given on the command line (None: not given)."""

    app: str | None = None
    database_url: str | None = None
    tenant: str | None = None
    server: str | None = None
    token: str | None = None
    api_key: str | None = None

    def merged(self, later: GlobalOptions) -> GlobalOptions:
        """These options, overridden by those given `later` (after the command)."""
        return GlobalOptions(
            **{
                f.name: getattr(later, f.name) or getattr(self, f.name)
                for f in fields(GlobalOptions)
            }
        )


_COMMAND_OPTIONS = "tether.global_options"


def root_options(ctx: typer.Context) -> GlobalOptions:
    """The global options given before the command name."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def takes_global_options(fn: Callable[P, T]) -> Callable[P, T]:
    """Let a command (taking `ctx: typer.Context`) accept every global option after its
    name too; `resolve(ctx)` then sees them. They are added to its signature, so help
    shows them under "Global options", and removed before the command is called."""
    extra = {
        "app": AppOpt,
        "database_url": DatabaseOpt,
        "tenant": TenantOpt,
        "server": ServerOpt,
        "token": TokenOpt,
        "api_key": ApiKeyOpt,
    }

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        given = GlobalOptions(**{name: _text(kwargs.pop(name, None)) for name in extra})
        meta = getattr(kwargs.get("ctx"), "meta", None)
        if not isinstance(meta, dict):
            raise TypeError(f"{fn.__name__} must take ctx: typer.Context")
        meta[_COMMAND_OPTIONS] = given
        return fn(*args, **kwargs)

    signature = inspect.signature(fn, eval_str=True)
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=hint)
        for name, hint in extra.items()
    ]
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *added]
    )
    wrapper.__annotations__ = {**inspect.get_annotations(fn, eval_str=True), **extra}
    return wrapper


def _text(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass
class Env:
    """Resolved settings for one command, and what was given explicitly."""

    settings: Settings
    database_url_flag: str | None
    """The database URL given explicitly (flag or env), which overrides the app's own."""
    given: GlobalOptions
    """The global options given on the command line (before or after the command)."""

    @property
    def tenant(self) -> str:
        return self.settings.tenant

    @property
    def server(self) -> str | None:
        """The server to drive over HTTP (None: open the database)."""
        return self.settings.server


def resolve(
    ctx: typer.Context,
    app: str | None = None,
    database_url: str | None = None,
    tenant: str | None = None,
    *,
    local_only: bool = False,
) -> Env:
    """Merge command options, global options, environment, config file and defaults.

    `local_only` commands (a worker, a migration, API keys) work on the database
    itself: an explicit `--server` is refused rather than ignored."""
    command = ctx.meta.get(_COMMAND_OPTIONS) or GlobalOptions()
    given = root_options(ctx).merged(command)
    given = given.merged(GlobalOptions(app=app, database_url=database_url, tenant=tenant))
    flags = {f.name: getattr(given, f.name) for f in fields(GlobalOptions)}
    settings = load_settings(flags)
    explicit_db = given.database_url or os.environ.get("TETHER_DATABASE_URL") or None
    if local_only and given.server:
        name = ctx.command_path.removeprefix(ctx.find_root().command_path).strip()
        raise ConfigError(
            f"--server is for the task and approval commands; `{name}` works on the "
            "database itself (give --database-url)"
        )
    return Env(settings=settings, database_url_flag=explicit_db, given=given)
