"""Task commands: `submit`, `status`, `list`, `cancel`, `signal`, `rerun`.

Each runs one code path on an `Operations` (`tether.cli.operations`): the database, or a
server with `--server`. Every task id argument may be a full id or a unique beginning or
end of one (`tether.cli.refs`).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from tether.cli import refs
from tether.cli.common import (
    EXIT_USAGE,
    CLIError,
    approval_json,
    console,
    fitted_table,
    handle_errors,
    local_time,
    print_json,
    spend_text,
    styled_status,
    task_json,
    votes,
)
from tether.cli.operations import Operations, run_with
from tether.cli.options import JsonOpt, resolve, takes_global_options
from tether.cli.root import cli
from tether.cli.step_errors import failed_attempts_hint, print_attempt_errors, step_json
from tether.client import ApiError
from tether.models import (
    Approval,
    Budget,
    Cost,
    SpendLine,
    StepRecord,
    Task,
    TaskPhase,
    TaskStatus,
)

TaskRef = Annotated[
    str, typer.Argument(metavar="ID", help="Task id (or a unique beginning or end of it).")
]


def parse_json(text: str, what: str) -> Any:
    """Decode a JSON option value, or fail with one line naming the option."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CLIError(f"{what} is not valid JSON: {exc}", EXIT_USAGE) from None


@cli.command()
@takes_global_options
@handle_errors
def submit(
    ctx: typer.Context,
    workflow: Annotated[str, typer.Argument(help="Name of a registered workflow.")],
    input: Annotated[
        str, typer.Option("--input", "-i", metavar="JSON", help="The task input as JSON.")
    ] = "null",
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key", metavar="KEY", help="Same key + same input → the same task."
        ),
    ] = None,
    correlation_id: Annotated[
        str | None,
        typer.Option("--correlation-id", metavar="ID", help="Your id for this piece of work."),
    ] = None,
    priority: Annotated[int, typer.Option(metavar="N", help="Higher runs first.")] = 0,
    queue: Annotated[
        str | None, typer.Option(metavar="NAME", help="Queue (default: the workflow's).")
    ] = None,
    spend_budget: Annotated[
        str | None,
        typer.Option(
            "--spend-budget",
            metavar="JSON",
            help='The task\'s limit on spend: {"usd": 0.5, "tokens": 100000, '
            '"on_exhausted": "approve"|"fail"} (default: the workflow\'s).',
        ),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Submit a task; prints its id (nothing runs here: workers pick it up)."""
    env = resolve(ctx)
    value = parse_json(input, "--input")
    budget = None
    if spend_budget is not None:
        try:
            budget = Budget.from_json(parse_json(spend_budget, "--spend-budget"))
        except ValueError as exc:
            raise CLIError(f"--spend-budget: {exc}", EXIT_USAGE) from None

    async def go(ops: Operations) -> tuple[Task, bool]:
        return await ops.submit(
            workflow,
            value,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
            priority=priority,
            queue=queue,
            spend_budget=budget,
        )

    task, created = run_with(env, go, needs_app=True)
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


@cli.command()
@takes_global_options
@handle_errors
def status(
    ctx: typer.Context,
    task_ref: TaskRef,
    steps_detail: Annotated[
        bool,
        typer.Option(
            "--steps",
            help="Also show every failed attempt of each step: error, traceback, "
            "classification and retry decision (with --json: the step log too).",
        ),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Show a task, its approvals and its steps."""
    env = resolve(ctx)

    async def go(
        ops: Operations,
    ) -> tuple[Task, list[StepRecord], SpendLine, list[Approval] | None]:
        task = await refs.find_task(ops, task_ref)
        steps = await ops.steps(task.id)
        spend = await ops.task_spend(task.id)
        try:
            return task, steps, spend, await ops.approvals(task_id=task.id)
        except ApiError as exc:
            if exc.status != 403:
                raise
            return task, steps, spend, None  # this credential may read tasks, not approvals

    task, steps, spend, approvals = run_with(env, go)
    if json:
        shown = None if approvals is None else [approval_json(a) for a in approvals]
        out = {**task_json(task), "spend": spend.to_json(), "approvals": shown}
        if steps_detail:
            out["steps"] = [step_json(s) for s in steps]
        print_json(out)
        return
    console.print(_task_grid(task, spend))
    if approvals is None:
        console.print("[dim]approvals: not shown (the credential lacks approvals:read)[/]")
    elif approvals:
        console.print(_approvals_table(approvals))
    if steps:
        console.print(_steps_table(steps))
    if steps_detail:
        print_attempt_errors(steps)
    elif (hint := failed_attempts_hint(task.id, steps)) is not None:
        console.print(hint, highlight=False)


def _task_grid(task: Task, spend: SpendLine | None = None) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    status_text = styled_status(str(task.status))
    if task.wait_reason is not None and task.status == TaskStatus.WAITING:
        status_text += f" ({task.wait_reason})"
    if task.cancel_requested and not task.status.terminal:
        status_text += " [dim](cancel requested)[/]"
    grid.add_row("task", task.id)
    grid.add_row("workflow", f"{task.workflow} v{task.workflow_version}")
    grid.add_row("status", status_text)
    if task.phase != TaskPhase.EXECUTION:
        grid.add_row("phase", str(task.phase))
    grid.add_row("tenant / queue", f"{task.tenant} / {task.queue}")
    grid.add_row("attempt", str(task.attempt))
    grid.add_row("created", local_time(task.created_at))
    if task.finished_at is not None:
        grid.add_row("finished", local_time(task.finished_at))
    if task.forked_from is not None:
        since = f" from step {task.fork_from_seq}" if task.fork_from_seq else ""
        grid.add_row("re-run of", f"{task.forked_from}{since}")
    if task.idempotency_key:
        grid.add_row("idempotency key", task.idempotency_key)
    if task.error is not None:
        where = f" in step {task.error.step!r}" if task.error.step else ""
        grid.add_row("error", f"[red]{task.error.type}{where}: {task.error.message}[/]")
        if task.error.compensated is not None:
            grid.add_row("undone", ", ".join(task.error.compensated) or "nothing")
    if spend is not None and (
        spend.spent != Cost() or spend.reserved != Cost() or task.spend_budget
    ):
        grid.add_row("spend", spend_text(spend))
    if task.status == TaskStatus.SUCCEEDED:
        grid.add_row("result", _short_json(task.result))
    return grid


def _approvals_table(approvals: list[Approval]) -> Table:
    shown = refs.short_ids(a.id for a in approvals)
    rows = [
        [
            shown[a.id],
            str(a.seq),
            a.risk,
            styled_status(a.status),
            f"{votes(a)}/{a.required}",
            escape(str((a.request or {}).get("summary") or "")),
        ]
        for a in approvals
    ]
    headers = ("id", "#", "risk", "status", "votes", "summary")
    return fitted_table(headers, rows, flexible=5, title="approvals")


def _steps_table(steps: list[StepRecord]) -> Table:
    rows = [
        [
            str(s.seq),
            escape(s.name),
            str(s.kind),
            styled_status(str(s.status)),
            str(s.attempts),
            f"{s.finished_at - s.started_at:.2f}s"
            if s.finished_at is not None and s.started_at is not None
            else "-",
        ]
        for s in steps
    ]
    headers = ("#", "step", "kind", "status", "attempts", "duration")
    return fitted_table(headers, rows, flexible=1, title="steps")


def _short_json(value: Any, width: int = 100) -> str:
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
@takes_global_options
@handle_errors
def list_(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option("--status", "-s", metavar="S[,S]", help="Filter: status[,status...]."),
    ] = None,
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", metavar="NAME", help="Filter.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", metavar="N", min=1, max=10000)] = 50,
    json: JsonOpt = False,
) -> None:
    """List tasks, newest first (short ids: any unique end of an id works as the id)."""
    env = resolve(ctx)
    statuses = _parse_statuses(status)

    async def go(ops: Operations) -> list[Task]:
        return await ops.tasks(status=statuses, workflow=workflow, limit=limit)

    tasks = run_with(env, go)
    if json:
        print_json([task_json(t) for t in tasks])
        return
    if not tasks:
        console.print("[dim]no tasks[/]")
        return
    shown = refs.short_ids(t.id for t in tasks)
    rows = [
        [
            shown[t.id],
            escape(t.workflow),
            styled_status(str(t.status)),
            str(t.steps_done),
            str(t.attempt),
            local_time(t.created_at, "%m-%d %H:%M:%S"),
        ]
        for t in tasks
    ]
    headers = ("id", "workflow", "status", "steps", "attempt", "created")
    console.print(fitted_table(headers, rows, flexible=1))


@cli.command()
@takes_global_options
@handle_errors
def cancel(
    ctx: typer.Context,
    task_ref: TaskRef,
    compensate: Annotated[
        bool,
        typer.Option("--compensate", help="Undo its completed steps first (their compensations)."),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Cancel a task: queued and waiting ones at once, running ones cooperatively.

    With --compensate a worker first runs the compensations of its completed steps,
    latest first, then ends it cancelled."""
    env = resolve(ctx)

    async def go(ops: Operations) -> Task:
        return await ops.cancel((await refs.find_task(ops, task_ref)).id, compensate)

    task = run_with(env, go)
    if json:
        print_json(task_json(task))
    elif task.status == TaskStatus.CANCELLED:
        console.print(f"{task.id} {styled_status('cancelled')}")
    elif compensate or task.phase == TaskPhase.COMPENSATION:
        console.print(
            f"{task.id} is {styled_status(str(task.status))}: cancellation requested, "
            "a worker undoes its completed steps, then ends it"
        )
    else:
        console.print(
            f"{task.id} is {styled_status(str(task.status))}: cancellation requested, "
            "its worker stops it at the next step boundary"
        )


@cli.command()
@takes_global_options
@handle_errors
def signal(
    ctx: typer.Context,
    task_ref: Annotated[
        str, typer.Argument(metavar="TASK", help="Task id (or a unique beginning or end of it).")
    ],
    name: Annotated[str, typer.Argument(help="Signal name the workflow waits for.")],
    data: Annotated[
        str, typer.Option("--data", "-d", metavar="JSON", help="Payload as JSON.")
    ] = "null",
) -> None:
    """Send a signal to a task (kept until its workflow waits for it)."""
    env = resolve(ctx)
    payload = parse_json(data, "--data")

    async def go(ops: Operations) -> tuple[str, int]:
        task = await refs.find_task(ops, task_ref)
        return task.id, await ops.signal(task.id, name, payload)

    task_id, signal_id = run_with(env, go)
    console.print(f"signal {name!r} sent to {task_id} (#{signal_id})")


@cli.command()
@takes_global_options
@handle_errors
def rerun(
    ctx: typer.Context,
    task_ref: TaskRef,
    from_step: Annotated[
        int | None,
        typer.Option(
            "--from-step",
            metavar="N",
            min=1,
            help="Run step N (its # in `tether status`) and every later one again.",
        ),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Re-run an ended task as a new linked task that reuses its finished steps.

    With --from-step N, step N and every later one run again. A step that runs again
    presents the idempotency key of the step it replaces."""
    env = resolve(ctx)

    async def go(ops: Operations) -> Task:
        return await ops.rerun((await refs.find_task(ops, task_ref)).id, from_step)

    task = run_with(env, go, needs_app=True)  # locally: the input is validated again
    if json:
        print_json(task_json(task))
        return
    reused = f", {task.steps_done} finished steps reused" if task.steps_done else ""
    console.print(
        f"re-running {task.forked_from} as [bold]{task.id}[/] "
        f"({styled_status(str(task.status))}{reused})"
    )


@cli.command()
@takes_global_options
@handle_errors
def compensate(ctx: typer.Context, task_ref: TaskRef, json: JsonOpt = False) -> None:
    """Undo a failed or cancelled task's completed steps.

    A new task, linked to it, runs the compensations of its completed steps, latest
    first (those it already ran are not run again), and ends as the original did."""
    env = resolve(ctx)

    async def go(ops: Operations) -> Task:
        return await ops.compensate((await refs.find_task(ops, task_ref)).id)

    task = run_with(env, go, needs_app=True)  # locally: the fork's input is validated
    if json:
        print_json(task_json(task))
        return
    console.print(
        f"compensating {task.forked_from} as [bold]{task.id}[/] ({styled_status(str(task.status))})"
    )
