"""`tether schedules ...`: create, list, show, pause, resume, delete, trigger.

Each command runs one code path on `Operations.schedules` (`tether.cli.schedule_ops`):
the database as `--tenant`, or a server with `--server` as the credential's tenant.
Locally, `create` and `trigger` need `--app` (the workflow validates the input).
Tables show times in the local time zone; `--json` prints RFC 3339 UTC, as the API.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tether.cli.common import (
    console,
    fitted_table,
    handle_errors,
    iso,
    local_time,
    print_json,
    task_json,
)
from tether.cli.operations import Operations, run_with
from tether.cli.options import JsonOpt, resolve, takes_global_options
from tether.cli.root import App, cli
from tether.cli.tasks import parse_json
from tether.models import Task
from tether.models.schedules import DEFAULT_MAX_MISSED, MissedTicks, Schedule
from tether.schedules.cron import Cron
from tether.schedules.spec import ScheduleSpec
from tether.schedules.ticks import upcoming

UPCOMING = 5
"""Next ticks `show` prints."""

schedules_cli = App(
    help="Cron schedules: start a workflow at each tick (docs/schedules.md).",
    no_args_is_help=True,
)
cli.add_typer(schedules_cli, name="schedules")

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Schedule name.")]


def schedule_json(s: Schedule) -> dict[str, Any]:
    """A schedule as plain JSON (the shape `--json` prints; the API's fields)."""
    return {
        "name": s.name,
        "workflow": s.workflow,
        "cron": s.cron,
        "timezone": s.timezone,
        "input": s.input,
        "missed": str(s.missed),
        "max_missed": s.max_missed,
        "status": str(s.status),
        "origin": str(s.origin),
        "next_run_at": iso(s.next_at),
        "upcoming": [iso(t) for t in _upcoming(s, UPCOMING)],
        "last_tick_at": iso(s.last_tick_at),
        "last_task_id": s.last_task_id,
        "last_error": s.last_error,
        "created_by": s.created_by,
        "created_at": iso(s.created_at),
        "updated_at": iso(s.updated_at),
    }


def _upcoming(s: Schedule, count: int) -> list[float]:
    return upcoming(Cron(s.cron, s.timezone), s.next_at, count)


def _next(s: Schedule) -> str:
    return "paused" if s.next_at is None else local_time(s.next_at)


def _print_one(s: Schedule, json: bool) -> None:
    if json:
        print_json(schedule_json(s))
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("schedule", s.name)
    grid.add_row("workflow", s.workflow)
    grid.add_row("cron", f"{s.cron}  ({s.timezone})")
    grid.add_row("input", escape(str(s.input)))
    grid.add_row(
        "missed ticks", str(s.missed) + (f" (newest {s.max_missed})" if s.missed == "all" else "")
    )
    grid.add_row("status", f"{s.status} ({s.origin})")
    grid.add_row("next runs", ", ".join(local_time(t) for t in _upcoming(s, UPCOMING)) or "-")
    if s.last_tick_at is not None:
        grid.add_row("last tick", local_time(s.last_tick_at))
    if s.last_task_id is not None:
        grid.add_row("last task", s.last_task_id)
    if s.last_error is not None:
        grid.add_row("last error", f"[red]{escape(s.last_error)}[/]")
    console.print(grid)


@schedules_cli.command("create")
@takes_global_options
@handle_errors
def create(
    ctx: typer.Context,
    name: NameArg,
    workflow: Annotated[str, typer.Option("--workflow", "-w", help="Registered workflow.")],
    cron: Annotated[
        str,
        typer.Option(
            "--cron", metavar="EXPR", help="5 fields, a 6th for seconds last, or @daily etc."
        ),
    ],
    tz: Annotated[str, typer.Option("--tz", metavar="ZONE", help="IANA time zone.")] = "UTC",
    input: Annotated[
        str, typer.Option("--input", "-i", metavar="JSON", help="Every task's input.")
    ] = "null",
    missed: Annotated[
        MissedTicks,
        typer.Option("--missed", help="Ticks missed while nothing ran: skip, once, all."),
    ] = MissedTicks.ONCE,
    max_missed: Annotated[
        int, typer.Option("--max-missed", metavar="N", min=1, help="With --missed all: at most N.")
    ] = DEFAULT_MAX_MISSED,
    json: JsonOpt = False,
) -> None:
    """Create a schedule, active from its first tick after now."""
    env = resolve(ctx)
    spec = ScheduleSpec(name, workflow, cron, tz, parse_json(input, "--input"), missed, max_missed)

    async def go(ops: Operations) -> Schedule:
        return await ops.schedules.create(spec)

    _print_one(run_with(env, go, needs_app=True), json)


@schedules_cli.command("list")
@takes_global_options
@handle_errors
def list_schedules(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", metavar="N", min=1, max=10000)] = 100,
    json: JsonOpt = False,
) -> None:
    """List schedules by name, with their next run."""
    env = resolve(ctx)

    async def go(ops: Operations) -> list[Schedule]:
        return await ops.schedules.list(limit)

    found = run_with(env, go)
    if json:
        print_json([schedule_json(s) for s in found])
        return
    if not found:
        console.print("[dim]no schedules[/]")
        return
    rows = [
        [
            s.name,
            s.workflow,
            f"{s.cron} ({s.timezone})",
            str(s.status),
            _next(s),
            local_time(s.last_tick_at) if s.last_tick_at else "-",
        ]
        for s in found
    ]
    headers = ("name", "workflow", "cron", "status", "next run", "last tick")
    console.print(fitted_table(headers, rows, flexible=2))


@schedules_cli.command("show")
@takes_global_options
@handle_errors
def show(ctx: typer.Context, name: NameArg, json: JsonOpt = False) -> None:
    """Show a schedule and its next runs."""
    env = resolve(ctx)

    async def go(ops: Operations) -> Schedule:
        return await ops.schedules.get(name)

    _print_one(run_with(env, go), json)


@schedules_cli.command("pause")
@takes_global_options
@handle_errors
def pause(ctx: typer.Context, name: NameArg, json: JsonOpt = False) -> None:
    """Pause a schedule: no tick starts a task until it is resumed."""
    env = resolve(ctx)

    async def go(ops: Operations) -> Schedule:
        return await ops.schedules.pause(name)

    _done(run_with(env, go), json)


@schedules_cli.command("resume")
@takes_global_options
@handle_errors
def resume(ctx: typer.Context, name: NameArg, json: JsonOpt = False) -> None:
    """Resume a schedule from its first tick after now."""
    env = resolve(ctx)

    async def go(ops: Operations) -> Schedule:
        return await ops.schedules.resume(name)

    _done(run_with(env, go), json)


def _done(s: Schedule, json: bool) -> None:
    if json:
        print_json(schedule_json(s))
    else:
        console.print(f"schedule [bold]{s.name}[/] {s.status}; next run: {_next(s)}")


@schedules_cli.command("delete")
@takes_global_options
@handle_errors
def delete(ctx: typer.Context, name: NameArg) -> None:
    """Delete a schedule (the tasks it started stay)."""
    env = resolve(ctx)

    async def go(ops: Operations) -> None:
        await ops.schedules.delete(name)

    run_with(env, go)
    console.print(f"schedule [bold]{name}[/] deleted")


@schedules_cli.command("trigger")
@takes_global_options
@handle_errors
def trigger(
    ctx: typer.Context,
    name: NameArg,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", metavar="KEY", help="Same key → the same task."),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Run a schedule now (paused or not); prints the task id."""
    env = resolve(ctx)

    async def go(ops: Operations) -> Task:
        return await ops.schedules.trigger(name, idempotency_key)

    task = run_with(env, go, needs_app=True)
    if json:
        print_json(task_json(task))
    else:
        console.print(task.id)
