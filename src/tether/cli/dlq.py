"""`tether dlq ...`: the dead-letter queue — list, show, retry, escalate, dismiss,
history.

Each command runs one code path on `Operations.dlq` (`tether.cli.dlq_ops`): the
database as `--tenant`, or a server with `--server` as the credential's tenant.
Locally, `retry` needs `--app` (the re-runs are built from the registered workflows).
Tables show times in the local time zone; `--json` prints the API's shapes.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tether.cli.common import console, fitted_table, handle_errors, iso, local_time, print_json
from tether.cli.operations import Operations, run_with
from tether.cli.options import JsonOpt, resolve, takes_global_options
from tether.cli.root import App, cli
from tether.models.dlq import DlqAction, DlqGroup, DlqGroupStatus, DlqMember, DlqMemberState

SPARKS = " ▁▂▃▄▅▆▇█"

dlq_cli = App(
    help="The dead-letter queue: failed tasks grouped by root cause (docs/dlq.md).",
    no_args_is_help=True,
)
cli.add_typer(dlq_cli, name="dlq")

FpArg = Annotated[str, typer.Argument(metavar="FINGERPRINT", help="The group's fingerprint.")]
TasksOpt = Annotated[
    list[str] | None,
    typer.Option("--task", metavar="ID", help="Only this task of the group (repeatable)."),
]


def group_json(g: DlqGroup) -> dict[str, Any]:
    """A group as plain JSON (the API's fields)."""
    trend = g.trend
    return {
        "fingerprint": g.fingerprint,
        "status": str(g.status),
        "failures": g.failures,
        "open": g.open,
        "first_seen": iso(g.first_seen),
        "last_seen": iso(g.last_seen),
        "step": g.step,
        "error_type": g.error_type,
        "workflows": g.workflows,
        "example_task_id": g.example_task_id,
        "example_error": g.example_error.to_json(),
        "example_traceback": g.example_traceback,
        "assignee": g.assignee,
        "note": g.note,
        "escalated_at": iso(g.escalated_at),
        "trend": {
            "hourly": list(trend.hourly) if trend else [],
            "daily": list(trend.daily) if trend else [],
        },
    }


def member_json(m: DlqMember) -> dict[str, Any]:
    return {
        "task_id": m.task_id,
        "workflow": m.workflow,
        "workflow_version": m.workflow_version,
        "failed_at": iso(m.failed_at),
        "error": m.error.to_json(),
        "state": str(m.state),
        "retried_as": m.retried_as,
        "action_id": m.action_id,
    }


def action_json(a: DlqAction) -> dict[str, Any]:
    return {
        "id": a.id,
        "fingerprint": a.fingerprint,
        "action": str(a.action),
        "actor": a.actor,
        "at": iso(a.at),
        "reason": a.reason,
        "assignee": a.assignee,
        "task_ids": a.task_ids,
        "created": a.created,
        "requested": a.requested,
    }


def spark(counts: tuple[int, ...] | list[int]) -> str:
    """Counts as a one-line bar chart."""
    top = max(counts, default=0)
    if not top:
        return "·" * len(counts)
    return "".join(SPARKS[min(8, -(-c * 8 // top))] for c in counts)


def _error(g: DlqGroup) -> str:
    return escape(f"{g.error_type}: {g.example_error.message}")


@dlq_cli.command("list")
@takes_global_options
@handle_errors
def list_groups(
    ctx: typer.Context,
    status: Annotated[
        str, typer.Option("--status", help="open, retried, dismissed, expired or all.")
    ] = "open",
    limit: Annotated[int, typer.Option("--limit", "-n", metavar="N", min=1, max=10000)] = 50,
    json: JsonOpt = False,
) -> None:
    """List dead-letter groups, latest failure first, with a 24-hour trend."""
    env = resolve(ctx)
    chosen = None if status == "all" else DlqGroupStatus(status)

    async def go(ops: Operations) -> list[DlqGroup]:
        return await ops.dlq.groups(chosen, limit)

    found = run_with(env, go)
    if json:
        print_json([group_json(g) for g in found])
        return
    if not found:
        console.print("[dim]no dead-letter groups[/]")
        return
    rows = [
        [
            g.fingerprint,
            str(g.status),
            f"{g.open}/{g.failures}",
            g.step or "-",
            _error(g),
            local_time(g.last_seen),
            spark(g.trend.hourly) if g.trend else "",
            g.assignee or "-",
        ]
        for g in found
    ]
    headers = (
        "fingerprint",
        "status",
        "open/all",
        "step",
        "error",
        "last seen",
        "24 h",
        "assignee",
    )
    console.print(fitted_table(headers, rows, flexible=4))


@dlq_cli.command("show")
@takes_global_options
@handle_errors
def show(
    ctx: typer.Context,
    fingerprint: FpArg,
    state: Annotated[
        DlqMemberState | None, typer.Option("--state", help="Only tasks in this state.")
    ] = None,
    tasks: Annotated[int, typer.Option("--tasks", metavar="N", min=0, max=10000)] = 20,
    json: JsonOpt = False,
) -> None:
    """Show a group: counts, trend, example error with its traceback, its tasks and
    the latest actions."""
    env = resolve(ctx)

    async def go(ops: Operations) -> tuple[DlqGroup, list[DlqMember], list[DlqAction]]:
        group = await ops.dlq.group(fingerprint)
        members = await ops.dlq.tasks(fingerprint, state, tasks) if tasks else []
        return group, members, await ops.dlq.actions(fingerprint, 10)

    g, members, actions = run_with(env, go)
    if json:
        print_json(
            {
                "group": group_json(g),
                "tasks": [member_json(m) for m in members],
                "actions": [action_json(a) for a in actions],
            }
        )
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("group", f"{g.fingerprint} ({g.status})")
    grid.add_row("open", f"{g.open} of {g.failures} failures")
    grid.add_row("seen", f"{local_time(g.first_seen)} → {local_time(g.last_seen)}")
    grid.add_row("where", f"step {g.step or '-'} of {', '.join(g.workflows) or '-'}")
    grid.add_row("error", _error(g))
    if g.trend is not None:
        grid.add_row("trend", f"24 h {spark(g.trend.hourly)}  7 d {spark(g.trend.daily)}")
    if g.assignee:
        grid.add_row("assignee", escape(f"{g.assignee}: {g.note or ''}"))
    grid.add_row("example", g.example_task_id)
    console.print(grid)
    if g.example_traceback:
        console.print(f"[dim]{escape(g.example_traceback)}[/]")
    if members:
        rows = [
            [m.task_id, m.workflow, local_time(m.failed_at), str(m.state), m.retried_as or "-"]
            for m in members
        ]
        headers = ("task", "workflow", "failed", "state", "retried as")
        console.print(fitted_table(headers, rows, flexible=1))
    for a in actions:
        console.print(_action_line(a))


def _action_line(a: DlqAction) -> str:
    what = f"{a.action} of {len(a.task_ids)} tasks" if a.action != "escalate" else "escalate"
    to = f" to {a.assignee}" if a.assignee else ""
    why = f": {a.reason}" if a.reason else ""
    return escape(f"{local_time(a.at)}  {a.actor}  {what}{to}{why}  ({a.id})")


def _act(
    ctx: typer.Context,
    fingerprint: str,
    action: str,
    task_ids: list[str] | None,
    reason: str | None,
    assignee: str | None,
    limit: int,
    json: bool,
) -> None:
    env = resolve(ctx)

    async def go(ops: Operations) -> DlqAction:
        return await ops.dlq.act(
            fingerprint,
            action,
            task_ids=task_ids or None,
            reason=reason,
            assignee=assignee,
            limit=limit,
        )

    done = run_with(env, go, needs_app=action in ("retry", "compensate"))
    if json:
        print_json(action_json(done))
        return
    console.print(_action_line(done))
    for old, new in zip(done.task_ids, done.created, strict=False):
        console.print(f"{old} → {new}")


@dlq_cli.command("retry")
@takes_global_options
@handle_errors
def retry(
    ctx: typer.Context,
    fingerprint: FpArg,
    task: TasksOpt = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the trail).")] = None,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", min=1, max=10000, help="At most N tasks.")
    ] = 1000,
    json: JsonOpt = False,
) -> None:
    """Re-run the group's open tasks (or --task ones) from their failed step."""
    _act(ctx, fingerprint, "retry", task, reason, None, limit, json)


@dlq_cli.command("compensate")
@takes_global_options
@handle_errors
def compensate(
    ctx: typer.Context,
    fingerprint: FpArg,
    task: TasksOpt = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the trail).")] = None,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", min=1, max=10000, help="At most N tasks.")
    ] = 1000,
    json: JsonOpt = False,
) -> None:
    """Undo the completed steps of the group's open tasks (or --task ones): their
    compensations run in linked tasks (docs/sagas.md)."""
    _act(ctx, fingerprint, "compensate", task, reason, None, limit, json)


@dlq_cli.command("escalate")
@takes_global_options
@handle_errors
def escalate(
    ctx: typer.Context,
    fingerprint: FpArg,
    to: Annotated[str, typer.Option("--to", metavar="WHO", help="Who it is assigned to.")],
    note: Annotated[str | None, typer.Option("--note", help="What they should know.")] = None,
    task: TasksOpt = None,
    json: JsonOpt = False,
) -> None:
    """Assign the group to someone with a note, and notify (dlq.escalated)."""
    _act(ctx, fingerprint, "escalate", task, note, to, 1000, json)


@dlq_cli.command("dismiss")
@takes_global_options
@handle_errors
def dismiss(
    ctx: typer.Context,
    fingerprint: FpArg,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the trail).")],
    task: TasksOpt = None,
    json: JsonOpt = False,
) -> None:
    """Take the group's open tasks (or --task ones) out of the queue; nothing runs."""
    _act(ctx, fingerprint, "dismiss", task, reason, None, 1000, json)


@dlq_cli.command("history")
@takes_global_options
@handle_errors
def history(
    ctx: typer.Context,
    fingerprint: FpArg,
    limit: Annotated[int, typer.Option("--limit", "-n", metavar="N", min=1, max=500)] = 50,
    json: JsonOpt = False,
) -> None:
    """The group's audit trail, newest first: who did what, why, when, to which tasks."""
    env = resolve(ctx)

    async def go(ops: Operations) -> list[DlqAction]:
        return await ops.dlq.actions(fingerprint, limit)

    found = run_with(env, go)
    if json:
        print_json([action_json(a) for a in found])
        return
    if not found:
        console.print("[dim]no actions[/]")
    for a in found:
        console.print(_action_line(a))
