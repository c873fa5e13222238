"""What every command shares: loading the app, running coroutines, printing, and
turning known errors into one clear line on stderr (global options: `options.py`)."""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import sqlite3
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, NoReturn, ParamSpec, TypeVar

import httpx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tether.app import Tether
from tether.cli.options import Env
from tether.client import ApiError
from tether.errors import (
    ConfigError,
    IdempotencyConflict,
    InputValidationError,
    InvalidDlqAction,
    InvalidSchedule,
    InvalidTransition,
    SchemaOutOfDate,
    TaskNotFound,
    TetherError,
    UnknownWorkflow,
)
from tether.models import Approval, SpendLine, Task
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


class CLIError(Exception):
    """An error to report as one line on stderr, exiting with `code`."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


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


_USAGE_ERRORS = (
    ConfigError,
    UnknownWorkflow,
    InputValidationError,
    IdempotencyConflict,
    InvalidDlqAction,
    InvalidSchedule,
)


def handle_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn the errors a user can cause into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except CLIError as exc:
            fail(str(exc), exc.code)
        except ApiError as exc:  # the server refused: the same exit codes as locally
            fail(api_message(exc), EXIT_USAGE if exc.status in (400, 422) else EXIT_ERROR)
        except httpx.TransportError as exc:
            fail(f"cannot reach the server: {type(exc).__name__}: {exc}", EXIT_ERROR)
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


def api_message(exc: ApiError) -> str:
    """One line for a problem the server answered: its detail, the first invalid field,
    and the HTTP status."""
    text = str(exc.detail or exc.title or "error")
    if exc.errors:
        first = exc.errors[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        text += f": {where + ': ' if where else ''}{first.get('msg', '')}"
    return f"{text} (HTTP {exc.status})"


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
        "phase": str(task.phase),
        "forked_from": task.forked_from,
        "fork_from_seq": task.fork_from_seq,
        "fork_root": task.fork_root,
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "run_at": iso(task.run_at),
        "deadline": iso(task.deadline),
        "spend_budget": None if task.spend_budget is None else task.spend_budget.to_json(),
    }


def approval_json(a: Approval) -> dict[str, Any]:
    """An approval as plain JSON (the shape `--json` prints)."""
    request = a.request or {}
    return {
        "id": a.id,
        "task_id": a.task_id,
        "tenant": a.tenant,
        "seq": a.seq,
        "workflow": a.workflow,
        "status": a.status,
        "risk": a.risk,
        "summary": request.get("summary"),
        "evidence": request.get("evidence") or [],
        "impact": request.get("impact"),
        "rollback": request.get("rollback"),
        "required_approvers": a.required,
        "approvals": votes(a),
        "submitter": a.submitter,
        "decisions": [{**d, "at": iso(d.get("at"))} for d in a.decisions],
        "resolution": a.resolution,
        "reason": a.reason,
        "changes": a.changes,
        "created_at": iso(a.created_at),
        "expires_at": iso(a.expires_at),
        "on_timeout": a.on_timeout,
        "decided_at": iso(a.decided_at),
    }


def votes(a: Approval) -> int:
    """Approving decisions so far."""
    return sum(1 for d in a.decisions if d.get("approve"))


def spend_text(line: SpendLine) -> str:
    """A budget line in one line: `$0.12 of $0.50, 300 tokens (+$0.04 reserved)`."""
    usd = f"${line.spent.usd:.4f}".rstrip("0").rstrip(".")
    if line.limit_usd is not None:
        usd += f" of ${line.limit_usd:g}"
    tokens = f"{line.spent.tokens:,} tokens"
    if line.limit_tokens is not None:
        tokens += f" of {line.limit_tokens:,}"
    text = f"{usd}, {tokens}"
    if line.reserved.usd or line.reserved.tokens:
        text += f" [dim](+${line.reserved.usd:g}, {line.reserved.tokens:,} tokens reserved)[/]"
    return text


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


APPROVAL_STYLE = {"pending": "magenta", "approved": "green", "rejected": "red"}


def styled_status(status: str) -> str:
    """A task's (or an approval's) status, coloured."""
    style = STATUS_STYLE.get(status) or APPROVAL_STYLE.get(status, "white")
    return f"[{style}]{status}[/]"


def fitted_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], flexible: int, title: str | None = None
) -> Table:
    """A table that fits the terminal: every column but `flexible` is shown whole (ids,
    statuses, times), and the `flexible` one (a name, a summary) is cut with "…" to the
    room left. Cells may hold Rich markup."""
    plain = [[Text.from_markup(cell).cell_len for cell in row] for row in rows]
    widths = [max(len(h), *(p[i] for p in plain), 1) for i, h in enumerate(headers)]
    fixed = sum(w for i, w in enumerate(widths) if i != flexible)
    room = max(8, console.width - fixed - 3 * (len(headers) - 1))  # " │ " between columns
    table = Table(show_edge=False, pad_edge=False, title=title, title_justify="left")
    for i, header in enumerate(headers):
        if i == flexible:
            table.add_column(header, no_wrap=True, max_width=room)
        else:
            table.add_column(header, no_wrap=True, min_width=widths[i])
    for row in rows:
        cells = list(row)
        text = Text.from_markup(cells[flexible])
        if text.cell_len > room:
            text.truncate(room - 1)
            text.append("…")
        table.add_row(*cells[:flexible], text, *cells[flexible + 1 :])
    return table


def local_time(ts: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).strftime(fmt)
