"""What every command shares: global options, loading the app, running coroutines,
printing, and turning known errors into one clear line on stderr.

Global options (`--app`, `--database-url`, `--tenant`) are accepted both before the
command (`tether --app m:app list`) and after it (`tether list --app m:app`); the value
given after the command wins. Each falls back to its `TETHER_*` environment variable,
then the config file, then the default (`tether.config.load_settings`).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import sqlite3
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

from tether.app import Tether
from tether.config import Settings, load_settings
from tether.errors import (
    ConfigError,
    IdempotencyConflict,
    InputValidationError,
    InvalidTransition,
    SchemaOutOfDate,
    TaskNotFound,
    TetherError,
    UnknownWorkflow,
)
from tether.models import Task
from tether.models.times import format_time
from tether.services import admin

P = ParamSpec("P")
T = TypeVar("T")

console = Console()
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_ERROR = 1
"""The operation failed (task not found, database problem, watched task failed)."""
EXIT_USAGE = 2
"""The invocation is wrong: bad option, bad input, bad config, unknown workflow or app."""
EXIT_CANCELLED = 3
"""`tether watch`: the task ended cancelled."""

AppOpt = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="The Tether app as pkg.module:attr (env TETHER_APP).",
        show_default=False,
    ),
]
DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="sqlite:///path or postgresql://... (env TETHER_DATABASE_URL; "
        "default sqlite:///tether.db).",
        show_default=False,
    ),
]
TenantOpt = Annotated[
    str | None,
    typer.Option(
        "--tenant",
        help="Tenant to act as (env TETHER_TENANT; default 'default').",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


class CLIError(Exception):
    """An error to report as one line on stderr, exiting with `code`."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class GlobalOptions:
    """Global options given before the command name (see `tether --help`)."""

    app: str | None = None
    database_url: str | None = None
    tenant: str | None = None


def global_options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


@dataclass
class Env:
    """Resolved settings for one command."""

    settings: Settings
    database_url_flag: str | None
    """The database URL given explicitly (flag or env), which overrides the app's own."""

    @property
    def tenant(self) -> str:
        return self.settings.tenant


def resolve(
    ctx: typer.Context,
    app: str | None = None,
    database_url: str | None = None,
    tenant: str | None = None,
) -> Env:
    """Merge command options, global options, environment, config file and defaults."""
    g = global_options(ctx)
    flags = {
        "app": app or g.app,
        "database_url": database_url or g.database_url,
        "tenant": tenant or g.tenant,
    }
    settings = load_settings(flags)
    explicit_db = flags["database_url"] or os.environ.get("TETHER_DATABASE_URL") or None
    return Env(settings=settings, database_url_flag=explicit_db)


def import_app(ref: str) -> Tether:
    """Load `pkg.module:attr` (the working directory is importable, as with uvicorn)."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise CLIError(f"invalid --app {ref!r}: expected pkg.module:attr", EXIT_USAGE)
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise CLIError(
                f"cannot import app module {module_name!r} (from --app {ref}): no module "
                f"named {exc.name!r}; check the name and PYTHONPATH",
                EXIT_USAGE,
            ) from None
        raise CLIError(f"app module {module_name!r} failed to import: {exc}", EXIT_USAGE) from None
    except TetherError:
        raise
    except Exception as exc:
        raise CLIError(
            f"app module {module_name!r} failed to import: {type(exc).__name__}: {exc}",
            EXIT_USAGE,
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"module {module_name!r} has no attribute {attr!r}", EXIT_USAGE)
        obj = getattr(obj, part)
    if not isinstance(obj, Tether):
        raise CLIError(
            f"{ref} is not a Tether app (it is a {type(obj).__name__}; expected app = Tether())",
            EXIT_USAGE,
        )
    return obj


def build_app(env: Env, *, required: bool = False) -> Tether:
    """The user's app (`--app`), or a bare one for commands that only need the store.

    An explicit database URL (flag or environment) replaces the app's own store.
    """
    if env.settings.app:
        app = import_app(env.settings.app)
        if env.database_url_flag and env.database_url_flag != app.settings.database_url:
            admin.use_database(app, env.database_url_flag)
        return app
    if required:
        raise CLIError("no app given: pass --app pkg.module:attr or set TETHER_APP", EXIT_USAGE)
    return Tether(settings=env.settings)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print `error: message` on stderr and exit."""
    first_line = " ".join(str(message).split("\n")[0].split()) or "unknown error"
    err_console.print(f"[bold red]error:[/] {first_line}", markup=True, highlight=False)
    raise typer.Exit(code)


_USAGE_ERRORS = (ConfigError, UnknownWorkflow, InputValidationError, IdempotencyConflict)


def handle_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn the errors a user can cause into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except CLIError as exc:
            fail(str(exc), exc.code)
        except _USAGE_ERRORS as exc:
            fail(str(exc), EXIT_USAGE)
        except TaskNotFound as exc:
            fail(f"task not found: {exc}", EXIT_ERROR)
        except SchemaOutOfDate as exc:
            fail(str(exc), EXIT_ERROR)
        except InvalidTransition as exc:
            fail(str(exc), EXIT_ERROR)
        except TetherError as exc:
            fail(f"{type(exc).__name__}: {exc}", EXIT_ERROR)
        except sqlite3.DatabaseError as exc:
            fail(f"database error: {exc}", EXIT_ERROR)
        except OSError as exc:
            fail(f"{type(exc).__name__}: {exc}", EXIT_ERROR)

    return wrapper


# output ---------------------------------------------------------------------------------


def iso(ts: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC (`2025-01-02T03:04:05.678901Z`, the API's format:
    `tether.models.times`), None stays None."""
    return format_time(ts)


def task_json(task: Task) -> dict[str, Any]:
    """A task as plain JSON (the shape `--json` prints)."""
    return {
        "id": task.id,
        "workflow": task.workflow,
        "workflow_version": task.workflow_version,
        "tenant": task.tenant,
        "queue": task.queue,
        "priority": task.priority,
        "status": str(task.status),
        "wait_reason": None if task.wait_reason is None else str(task.wait_reason),
        "input": task.input,
        "result": task.result,
        "error": None if task.error is None else task.error.to_json(),
        "idempotency_key": task.idempotency_key,
        "correlation_id": task.correlation_id,
        "created_by": task.created_by,
        "attempt": task.attempt,
        "steps_done": task.steps_done,
        "current_step": task.current_step,
        "cancel_requested": task.cancel_requested,
        "forked_from": task.forked_from,
        "fork_from_seq": task.fork_from_seq,
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "run_at": iso(task.run_at),
        "deadline": iso(task.deadline),
    }


def print_json(value: Any) -> None:
    """Print JSON on stdout, unstyled (safe to pipe into `jq`)."""
    import orjson

    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


STATUS_STYLE = {
    "queued": "cyan",
    "running": "yellow",
    "waiting": "magenta",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "bright_black",
}


def styled_status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def local_time(ts: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).strftime(fmt)
