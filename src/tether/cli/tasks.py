"""Task commands: `submit`, `status`, `list`, `cancel`, `signal`."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from tether.app import Tether
from tether.cli.common import (
    EXIT_USAGE,
    AppOpt,
    CLIError,
    DatabaseOpt,
    JsonOpt,
    TenantOpt,
    build_app,
    console,
    handle_errors,
    local_time,
    print_json,
    resolve,
    run,
    styled_status,
    task_json,
)
from tether.cli.root import cli
from tether.cli.step_errors import failed_attempts_hint, print_attempt_errors, step_json
from tether.models import StepRecord, Task, TaskFilter, TaskStatus


def parse_json(text: str, what: str) -> Any:
    """Decode a JSON option value, or fail with one line naming the option."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CLIError(f"{what} is not valid JSON: {exc}", EXIT_USAGE) from None


@cli.command()
@handle_errors
def submit(
    ctx: typer.Context,
    workflow: Annotated[str, typer.Argument(help="Name of a registered workflow.")],
    input: Annotated[str, typer.Option("--input", "-i", help="The task input as JSON.")] = "null",
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="Same key + same input → the same task."),
    ] = None,
    correlation_id: Annotated[
        str | None, typer.Option("--correlation-id", help="Your id for this piece of work.")
    ] = None,
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    queue: Annotated[str | None, typer.Option(help="Queue (default: the workflow's).")] = None,
    json: JsonOpt = False,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Submit a task; prints its id (nothing runs here: workers pick it up)."""
    env = resolve(ctx, app, database_url, tenant)
    value = parse_json(input, "--input")
    tether_app = build_app(env, required=True)

    async def go() -> tuple[Task, bool]:
        async with tether_app:
            handle = await tether_app.submit(
                workflow,
                value,
                idempotency_key=idempotency_key,
                tenant=env.tenant,
                correlation_id=correlation_id,
                priority=priority,
                queue=queue,
            )
            return handle.initial, handle.created

    task, created = run(go())
    if json:
        print_json({**task_json(task), "created": created})
        return
    if created:
        console.print(f"submitted [bold]{task.id}[/] ({task.workflow}, queue {task.queue})")
    else:
        console.print(
            f"[bold]{task.id}[/] already exists for idempotency key "
            f"{idempotency_key!r} (status {styled_status(str(task.status))})"
        )


async def _task_and_steps(app: Tether, task_id: str, tenant: str) -> tuple[Task, list[StepRecord]]:
    async with app:
        task = await app.get(task_id, tenant=tenant)
        return task, await app.steps(task_id, tenant=tenant)


@cli.command()
@handle_errors
def status(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    steps_detail: Annotated[
        bool,
        typer.Option(
            "--steps",
            help="Also show every failed attempt of each step: error, traceback, "
            "classification and retry decision (with --json: the step log too).",
        ),
    ] = False,
    json: JsonOpt = False,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Show a task and its steps."""
    env = resolve(ctx, app, database_url, tenant)
    task, steps = run(_task_and_steps(build_app(env), task_id, env.tenant))
    if json:
        out = task_json(task)
        if steps_detail:
            out["steps"] = [step_json(s) for s in steps]
        print_json(out)
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    status_text = styled_status(str(task.status))
    if task.wait_reason is not None and task.status == TaskStatus.WAITING:
        status_text += f" ({task.wait_reason})"
    if task.cancel_requested and not task.status.terminal:
        status_text += " [dim](cancel requested)[/]"
    grid.add_row("task", task.id)
    grid.add_row("workflow", f"{task.workflow} v{task.workflow_version}")
    grid.add_row("status", status_text)
    grid.add_row("tenant / queue", f"{task.tenant} / {task.queue}")
    grid.add_row("attempt", str(task.attempt))
    grid.add_row("created", local_time(task.created_at))
    if task.finished_at is not None:
        grid.add_row("finished", local_time(task.finished_at))
    if task.idempotency_key:
        grid.add_row("idempotency key", task.idempotency_key)
    if task.error is not None:
        where = f" in step {task.error.step!r}" if task.error.step else ""
        grid.add_row("error", f"[red]{task.error.type}{where}: {task.error.message}[/]")
    if task.status == TaskStatus.SUCCEEDED:
        grid.add_row("result", _short(task.result))
    console.print(grid)
    if steps:
        table = Table(title="steps", title_justify="left", show_edge=False)
        for col in ("#", "step", "kind", "status", "attempts", "duration"):
            table.add_column(col)
        for s in steps:
            duration = (
                f"{s.finished_at - s.started_at:.2f}s"
                if s.finished_at is not None and s.started_at is not None
                else "-"
            )
            table.add_row(
                str(s.seq),
                s.name,
                str(s.kind),
                styled_status(str(s.status)),
                str(s.attempts),
                duration,
            )
        console.print(table)
    if steps_detail:
        print_attempt_errors(steps)
    elif (hint := failed_attempts_hint(task.id, steps)) is not None:
        console.print(hint, highlight=False)


def _short(value: Any, width: int = 100) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def _parse_statuses(text: str | None) -> list[TaskStatus] | None:
    if not text:
        return None
    out = []
    for part in text.split(","):
        try:
            out.append(TaskStatus(part.strip()))
        except ValueError:
            known = ", ".join(s.value for s in TaskStatus)
            raise CLIError(
                f"unknown status {part.strip()!r} (one of: {known})", EXIT_USAGE
            ) from None
    return out


@cli.command("list")
@handle_errors
def list_(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", "-s", help="Filter: status[,status...].")
    ] = None,
    workflow: Annotated[str | None, typer.Option("--workflow", "-w", help="Filter.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10000)] = 50,
    json: JsonOpt = False,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """List tasks, newest first."""
    env = resolve(ctx, app, database_url, tenant)
    flt = TaskFilter(
        tenant=env.tenant, status=_parse_statuses(status), workflow=workflow, limit=limit
    )
    tether_app = build_app(env)

    async def go() -> list[Task]:
        async with tether_app:
            return await tether_app.list_tasks(flt)

    tasks = run(go())
    if json:
        print_json([task_json(t) for t in tasks])
        return
    if not tasks:
        console.print("[dim]no tasks[/]")
        return
    table = Table(show_edge=False)
    table.add_column("id", no_wrap=True, min_width=36)  # whole, for copy and paste
    for col in ("workflow", "status", "steps", "attempt", "created"):
        table.add_column(col)
    for t in tasks:
        table.add_row(
            t.id,
            t.workflow,
            styled_status(str(t.status)),
            str(t.steps_done),
            str(t.attempt),
            local_time(t.created_at, "%m-%d %H:%M:%S"),
        )
    console.print(table)


@cli.command()
@handle_errors
def cancel(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    json: JsonOpt = False,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Cancel a task: queued and waiting ones at once, running ones cooperatively."""
    env = resolve(ctx, app, database_url, tenant)
    tether_app = build_app(env)

    async def go() -> Task:
        async with tether_app:
            return await tether_app.cancel(task_id, tenant=env.tenant, by="cli")

    task = run(go())
    if json:
        print_json(task_json(task))
    elif task.status == TaskStatus.CANCELLED:
        console.print(f"{task.id} {styled_status('cancelled')}")
    else:
        console.print(
            f"{task.id} is {styled_status(str(task.status))}: cancellation requested, "
            "its worker stops it at the next step boundary"
        )


@cli.command()
@handle_errors
def signal(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="TASK", help="Task id.")],
    name: Annotated[str, typer.Argument(help="Signal name the workflow waits for.")],
    data: Annotated[str, typer.Option("--data", "-d", help="Payload as JSON.")] = "null",
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Send a signal to a task (kept until its workflow waits for it)."""
    env = resolve(ctx, app, database_url, tenant)
    payload = parse_json(data, "--data")
    tether_app = build_app(env)

    async def go() -> int:
        async with tether_app:
            record = await tether_app.signal(task_id, name, payload, tenant=env.tenant)
            return record.id

    signal_id = run(go())
    console.print(f"signal {name!r} sent to {task_id} (#{signal_id})")
