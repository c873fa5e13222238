"""Approvals: the inbox, decisions, expiry."""

from __future__ import annotations

from typing import Any

from tether import serde
from tether.errors import ApprovalClosed, InvalidTransition, TaskNotFound
from tether.models import Approval, ApprovalFilter
from tether.store.sql import events, spend
from tether.store.sql.core import (
    APPROVAL_COLUMNS,
    SHORT_ID_MATCH,
    Conn,
    Dialect,
    Row,
    approval_from_row,
    short_id_params,
    task_for_update,
    wake,
)


async def get_approval(conn: Conn, approval_id: str, tenant: str | None) -> Approval | None:
    row = await conn.fetchone(
        f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = %s", (approval_id,)
    )
    if row is None or (tenant is not None and row["tenant"] != tenant):
        return None
    return approval_from_row(row)


async def list_approvals(conn: Conn, flt: ApprovalFilter) -> list[Approval]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("tenant", flt.tenant),
        ("status", flt.status),
        ("risk", flt.risk),
        ("task_id", flt.task_id),
    ):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if flt.short_id is not None:
        where.append(SHORT_ID_MATCH)
        params.extend(short_id_params(flt.short_id))
    if flt.before is not None:
        at, last_id = flt.before
        where.append("(created_at < %s OR (created_at = %s AND id < %s))")
        params += [at, at, last_id]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    params.append(flt.limit)
    rows = await conn.fetchall(
        f"SELECT {APPROVAL_COLUMNS} FROM approvals {clause} "
        "ORDER BY created_at DESC, id DESC LIMIT %s",
        params,
    )
    return [approval_from_row(r) for r in rows]


async def _approval_for_update(
    conn: Conn, d: Dialect, approval_id: str, tenant: str | None
) -> tuple[Row, Approval]:
    """The approval and its task's row, locked. Every change to an approval happens
    under its task's row lock, so the approval is read again once the lock is held: a
    decision or timeout committed meanwhile is seen, never overwritten."""
    row = await conn.fetchone("SELECT task_id, tenant FROM approvals WHERE id = %s", (approval_id,))
    if row is None or (tenant is not None and row["tenant"] != tenant):
        raise TaskNotFound(approval_id)
    task_row = await task_for_update(conn, d, row["task_id"], None)
    fresh = await conn.fetchone(
        f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = %s", (approval_id,)
    )
    if fresh is None:  # purged meanwhile
        raise TaskNotFound(approval_id)
    return task_row, approval_from_row(fresh)


async def decide(
    conn: Conn,
    d: Dialect,
    approval_id: str,
    tenant: str | None,
    decision: dict[str, Any],
    now: float,
) -> tuple[Approval, str | None]:
    """Record a decision; returns the approval and, when the decision was refused
    because the approval had timed out (the timeout is committed), the refusal."""
    task_row, a = await _approval_for_update(conn, d, approval_id, tenant)
    if a.status != "pending":
        raise ApprovalClosed(f"approval {a.id} is already {a.status}", a)
    if a.expires_at is not None and now >= a.expires_at:
        a = await _close_approval(
            conn,
            d,
            task_row,
            a,
            "approved" if a.on_timeout == "approve" else "rejected",
            "timeout",
            now,
        )
        return a, f"approval {a.id} timed out and was {a.status}"
    reviewer = str(decision["reviewer"])
    if a.submitter is not None and reviewer == a.submitter:
        raise InvalidTransition("the submitter of a task cannot decide on its own approval")
    if any(x["reviewer"] == reviewer for x in a.decisions):
        raise InvalidTransition(f"{reviewer} has already decided on approval {a.id}")
    if spend.budget_request(a) is not None:  # a raise: its changes are the new limits
        spend.check_changes(decision.get("changes"))
    entry = {
        "reviewer": reviewer,
        "approve": bool(decision["approve"]),
        "reason": decision.get("reason"),
        "changes": decision.get("changes"),
        "at": now,
    }
    a.decisions.append(entry)
    approvals = sum(1 for x in a.decisions if x["approve"])
    await conn.execute(
        "UPDATE approvals SET decisions = %s WHERE id = %s",
        (serde.dumps(a.decisions), a.id),
    )
    await conn.execute(
        events.INSERT_EVENT, events.approval_decision(a, entry, task_row["attempt"], now)
    )
    if not entry["approve"]:
        a.reason = decision.get("reason")
        a = await _close_approval(conn, d, task_row, a, "rejected", "reviewer", now)
    elif approvals >= a.required:
        changes: dict[str, Any] = {}
        for x in a.decisions:
            changes.update(x.get("changes") or {})
        a.changes = changes or None
        a.reason = decision.get("reason")
        a = await _close_approval(conn, d, task_row, a, "approved", "reviewer", now)
    return a, None


async def _close_approval(
    conn: Conn, d: Dialect, task_row: Row, a: Approval, status: str, resolution: str, now: float
) -> Approval:
    changed = await conn.execute(
        "UPDATE approvals SET status = %s, resolution = %s, changes = %s, reason = %s, "
        "decided_at = %s WHERE id = %s AND status = 'pending'",
        (
            status,
            resolution,
            None if a.changes is None else serde.dumps(a.changes),
            a.reason,
            now,
            a.id,
        ),
    )
    if changed:
        a.status, a.resolution, a.decided_at = status, resolution, now
        if task_row["status"] == "waiting":
            await wake(conn, a.task_id, now)
        prior = task_row["status"]
        await conn.execute(
            events.INSERT_EVENT,
            events.approval_decided(
                a, prior, "queued" if prior == "waiting" else prior, task_row["attempt"], now
            ),
        )
        await spend.approval_closed(conn, d, a, now)  # a budget's raise (ADR 92)
    return a


async def expire_approval(conn: Conn, d: Dialect, approval_id: str, now: float) -> Approval:
    """Apply an approval's timeout if it is still pending; return the outcome that stands."""
    task_row, a = await _approval_for_update(conn, d, approval_id, None)
    if a.status == "pending":
        outcome = "approved" if a.on_timeout == "approve" else "rejected"
        a = await _close_approval(conn, d, task_row, a, outcome, "timeout", now)
    return a
