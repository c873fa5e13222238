"""Approval commands: `approvals` (the inbox), `approve`, `reject`.

They talk to the database directly (like the other commands), as the tenant given by
`--tenant`. The reviewer is `--as`, else the login name ($USER); the submitter of a
task cannot decide on its own approvals, and each reviewer counts once.
"""

from __future__ import annotations

import getpass
import os
from typing import Annotated, Any

import typer
from rich.table import Table

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
    iso,
    local_time,
    print_json,
    resolve,
    run,
    styled_status,
)
from tether.cli.root import cli
from tether.cli.tasks import parse_json
from tether.errors import ApprovalClosed, TaskNotFound
from tether.models import Approval, ApprovalFilter
from tether.services import approvals as approval_service

STATUSES = ("pending", "approved", "rejected", "all")

ReasonOpt = Annotated[
    str, typer.Option("--reason", "-r", help="Why (kept in the audit log).", show_default=False)
]
AsOpt = Annotated[
    str | None,
    typer.Option("--as", help="Reviewer name (default: $USER).", show_default=False),
]


def approval_json(a: Approval) -> dict[str, Any]:
    """An approval as plain JSON (the shape `--json` prints)."""
    request = a.request or {}
    return {
        "id": a.id,
        "task_id": a.task_id,
        "tenant": a.tenant,
        "workflow": a.workflow,
        "status": a.status,
        "risk": a.risk,
        "summary": request.get("summary"),
        "evidence": request.get("evidence") or [],
        "impact": request.get("impact"),
        "rollback": request.get("rollback"),
        "required_approvers": a.required,
        "approvals": sum(1 for d in a.decisions if d.get("approve")),
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


def default_reviewer() -> str:
    """The login name: $USER, else what the OS says."""
    name = os.environ.get("USER") or os.environ.get("USERNAME")
    if name:
        return name
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        raise CLIError("cannot tell who you are: pass --as REVIEWER", EXIT_USAGE) from None


@cli.command()
@handle_errors
def approvals(
    ctx: typer.Context,
    status: Annotated[
        str, typer.Option("--status", "-s", help="pending, approved, rejected or all.")
    ] = "pending",
    risk: Annotated[str | None, typer.Option("--risk", help="Only this risk level.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10000)] = 100,
    json: JsonOpt = False,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """List approval requests (the inbox), newest first."""
    if status not in STATUSES:
        raise CLIError(f"unknown status {status!r} (one of: {', '.join(STATUSES)})", EXIT_USAGE)
    env = resolve(ctx, app, database_url, tenant)
    tether_app = build_app(env)
    flt = ApprovalFilter(
        tenant=env.tenant, status=None if status == "all" else status, risk=risk, limit=limit
    )

    async def go() -> list[Approval]:
        async with tether_app:
            return await approval_service.inbox(tether_app, flt)

    found = run(go())
    if json:
        print_json([approval_json(a) for a in found])
        return
    if not found:
        console.print(f"[dim]no {'' if status == 'all' else status + ' '}approvals[/]")
        return
    table = Table(show_edge=False)
    for col in ("id", "task", "risk", "status", "approvals", "summary", "asked", "expires"):
        table.add_column(col, overflow="fold")
    for a in found:
        summary = str((a.request or {}).get("summary") or "")
        table.add_row(
            a.id,
            a.task_id,
            a.risk,
            styled_status(a.status if a.status == "pending" else _closed_style(a)),
            f"{sum(1 for d in a.decisions if d.get('approve'))}/{a.required}",
            summary if len(summary) <= 60 else summary[:59] + "…",
            local_time(a.created_at),
            local_time(a.expires_at),
        )
    console.print(table)


def _closed_style(a: Approval) -> str:
    return "succeeded" if a.status == "approved" else "failed"


def _decide(
    ctx: typer.Context,
    approval_id: str,
    *,
    approve: bool,
    reason: str,
    reviewer: str | None,
    changes: dict[str, Any] | None,
    json: bool,
    app: str | None,
    database_url: str | None,
    tenant: str | None,
) -> None:
    if not reason.strip():
        raise CLIError("--reason must not be empty", EXIT_USAGE)
    env = resolve(ctx, app, database_url, tenant)
    who = reviewer or default_reviewer()
    tether_app = build_app(env)

    async def go() -> Approval:
        async with tether_app:
            return await tether_app.decide(
                approval_id,
                reviewer=who,
                approve=approve,
                reason=reason,
                changes=changes,
                tenant=env.tenant,
            )

    try:
        decided = run(go())
    except TaskNotFound:
        raise CLIError(f"approval not found: {approval_id}") from None
    except ApprovalClosed as exc:
        if json:
            print_json({**approval_json(exc.approval), "refused": str(exc)})
        stands = exc.approval
        raise CLIError(
            f"{exc} (the outcome that stands: {stands.status} by {stands.resolution})"
        ) from None
    if json:
        print_json(approval_json(decided))
        return
    verb = "approved" if approve else "rejected"
    if decided.status == "pending":
        got = sum(1 for d in decided.decisions if d.get("approve"))
        console.print(
            f"{who} {verb} {decided.id}: {got} of {decided.required} approvals, "
            "still waiting for another reviewer"
        )
    else:
        console.print(
            f"{who} {verb} {decided.id}: {styled_status(_closed_style(decided))} "
            f"[bold]{decided.status}[/], task {decided.task_id} resumes"
        )


@cli.command()
@handle_errors
def approve(
    ctx: typer.Context,
    approval_id: Annotated[str, typer.Argument(metavar="ID", help="Approval id.")],
    reason: ReasonOpt,
    reviewer: AsOpt = None,
    changes: Annotated[
        str | None,
        typer.Option("--changes", help="Approve with changes: a JSON object of edits."),
    ] = None,
    json: JsonOpt = False,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Approve a request (with --changes: approve with edits the workflow receives)."""
    edits = None if changes is None else parse_json(changes, "--changes")
    if edits is not None and not isinstance(edits, dict):
        raise CLIError("--changes must be a JSON object", EXIT_USAGE)
    _decide(
        ctx,
        approval_id,
        approve=True,
        reason=reason,
        reviewer=reviewer,
        changes=edits,
        json=json,
        app=app,
        database_url=database_url,
        tenant=tenant,
    )


@cli.command()
@handle_errors
def reject(
    ctx: typer.Context,
    approval_id: Annotated[str, typer.Argument(metavar="ID", help="Approval id.")],
    reason: ReasonOpt,
    reviewer: AsOpt = None,
    json: JsonOpt = False,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Reject a request: one rejection closes it, the workflow gets `approved=False`."""
    _decide(
        ctx,
        approval_id,
        approve=False,
        reason=reason,
        reviewer=reviewer,
        changes=None,
        json=json,
        app=app,
        database_url=database_url,
        tenant=tenant,
    )
