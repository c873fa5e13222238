"""Approval commands: `approvals` (the inbox), `approve`, `reject`.

`approve` and `reject` take an approval id, a unique beginning or end of one, or a task
with exactly one pending approval (`tether.cli.refs.find_approval`). Locally the
reviewer is `--as`, else the `identity` setting, else the login name; with `--server` it
is the credential's subject and `--as` is refused. The submitter of a task cannot decide
on its own approvals, and each reviewer counts once.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from tether.cli import refs
from tether.cli.common import (
    EXIT_USAGE,
    CLIError,
    approval_json,
    console,
    fitted_table,
    handle_errors,
    print_json,
    styled_status,
    votes,
)
from tether.cli.operations import Operations, run_with
from tether.cli.options import Env, JsonOpt, resolve, takes_global_options
from tether.cli.root import cli
from tether.cli.tasks import parse_json
from tether.config import local_identity
from tether.errors import ApprovalClosed
from tether.models import Approval

STATUSES = ("pending", "approved", "rejected", "all")

ApprovalRef = Annotated[
    str,
    typer.Argument(
        metavar="ID",
        help="Approval id, a unique beginning or end of one, or a task with one pending approval.",
    ),
]
ReasonOpt = Annotated[
    str,
    typer.Option(
        "--reason", "-r", metavar="TEXT", help="Why (kept in the audit log).", show_default=False
    ),
]
AsOpt = Annotated[
    str | None,
    typer.Option(
        "--as",
        metavar="NAME",
        help="Reviewer name (default: $USER). Not with --server: the credential's subject decides.",
        show_default=False,
    ),
]


@cli.command()
@takes_global_options
@handle_errors
def approvals(
    ctx: typer.Context,
    status: Annotated[
        str,
        typer.Option("--status", "-s", metavar="S", help="pending, approved, rejected or all."),
    ] = "pending",
    risk: Annotated[
        str | None, typer.Option("--risk", metavar="LEVEL", help="Only this risk level.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", metavar="N", min=1, max=10000)] = 100,
    json: JsonOpt = False,
) -> None:
    """List approval requests (the inbox), newest first."""
    if status not in STATUSES:
        raise CLIError(f"unknown status {status!r} (one of: {', '.join(STATUSES)})", EXIT_USAGE)
    env = resolve(ctx)

    async def go(ops: Operations) -> list[Approval]:
        wanted = None if status == "all" else status
        return await ops.approvals(status=wanted, risk=risk, limit=limit)

    found = run_with(env, go)
    if json:
        print_json([approval_json(a) for a in found])
        return
    if not found:
        console.print(f"[dim]no {'' if status == 'all' else status + ' '}approvals[/]")
        return
    # One set, so that no shown approval id is the end of a shown task id or the reverse.
    shown = refs.short_ids([*(a.id for a in found), *(a.task_id for a in found)])
    rows = [
        [
            shown[a.id],
            shown[a.task_id],
            a.risk,
            styled_status(a.status),
            f"{votes(a)}/{a.required}",
            escape(str((a.request or {}).get("summary") or "")),
        ]
        for a in found
    ]
    headers = ("id", "task", "risk", "status", "votes", "summary")
    console.print(fitted_table(headers, rows, flexible=5))


def _reviewer(env: Env, reviewer: str | None) -> str | None:
    """Who decides locally; None over HTTP (the server takes the credential's subject)."""
    if env.server is not None:
        if reviewer is not None:
            raise CLIError(
                "--as does not go with --server: the reviewer is the credential's subject",
                EXIT_USAGE,
            )
        return None
    # The same identity local submissions are made by (the submitter rule holds).
    return reviewer or env.settings.identity or local_identity()


def _decide(
    ctx: typer.Context,
    approval_ref: str,
    *,
    approve: bool,
    reason: str,
    reviewer: str | None,
    changes: dict[str, Any] | None,
    json: bool,
) -> None:
    if not reason.strip():
        raise CLIError("--reason must not be empty", EXIT_USAGE)
    env = resolve(ctx)
    who = _reviewer(env, reviewer)

    async def go(ops: Operations) -> Approval:
        target = await refs.find_approval(ops, approval_ref)
        return await ops.decide(target.id, approve=approve, reason=reason, changes=changes)

    try:
        decided = run_with(env, go, identity=who)
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
    # Over HTTP the reviewer is the credential's subject: the decision just appended.
    name = who or (str(decided.decisions[-1]["reviewer"]) if decided.decisions else "you")
    if decided.status == "pending":
        console.print(
            f"{name} {verb} {decided.id}: {votes(decided)} of {decided.required} approvals, "
            "still waiting for another reviewer"
        )
    else:
        console.print(
            f"{name} {verb} {decided.id}: {styled_status(decided.status)}, "
            f"task {decided.task_id} resumes"
        )


@cli.command()
@takes_global_options
@handle_errors
def approve(
    ctx: typer.Context,
    approval_ref: ApprovalRef,
    reason: ReasonOpt,
    reviewer: AsOpt = None,
    changes: Annotated[
        str | None,
        typer.Option(
            "--changes", metavar="JSON", help="Approve with changes: a JSON object of edits."
        ),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Approve a request (with --changes: approve with edits the workflow receives)."""
    edits = None if changes is None else parse_json(changes, "--changes")
    if edits is not None and not isinstance(edits, dict):
        raise CLIError("--changes must be a JSON object", EXIT_USAGE)
    _decide(
        ctx, approval_ref, approve=True, reason=reason, reviewer=reviewer, changes=edits, json=json
    )


@cli.command()
@takes_global_options
@handle_errors
def reject(
    ctx: typer.Context,
    approval_ref: ApprovalRef,
    reason: ReasonOpt,
    reviewer: AsOpt = None,
    json: JsonOpt = False,
) -> None:
    """Reject a request: one rejection closes it, the workflow gets `approved=False`."""
    _decide(
        ctx, approval_ref, approve=False, reason=reason, reviewer=reviewer, changes=None, json=json
    )
