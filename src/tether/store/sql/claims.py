"""Claims and heartbeats: how a worker takes tasks and keeps its leases."""

from __future__ import annotations

from typing import Any

from tether.models import Approval, SignalRecord, StepRecord
from tether.store.base import Claimed
from tether.store.sql import events
from tether.store.sql.core import (
    APPROVAL_COLUMNS,
    SIGNAL_COLUMNS,
    STEP_COLUMNS,
    TASK_COLUMNS,
    Conn,
    Dialect,
    Row,
    approval_from_row,
    signal_from_row,
    step_from_row,
    task_from_row,
)


def queue_match(d: Dialect, queues: list[str]) -> tuple[str, Any]:
    """A condition on `queue` for a claim's scans, and its parameter: an equality for
    one queue, a list match for several."""
    if len(queues) == 1:
        return "queue = %s", queues[0]
    return f"queue {d.any_of}", d.list_param(queues)


def queued_pick(
    d: Dialect, queues: list[str], only: str, now: float, workflows: Any, limit: int
) -> tuple[str, list[Any]]:
    """`SELECT id, status` of the queued tasks a claim takes, in claim order (priority,
    then due time), and its parameters. The `tasks_queued` index yields one queue's
    rows in that order, so the scan stops at the limit. A list of queues would make the
    database read and sort the whole backlog of those queues for every claim (ADR 54):
    several queues are scanned one by one, each up to the limit, and only those few
    rows are sorted together. `workflows` is the parameter of `only`, or None."""
    extra = [] if workflows is None else [workflows]

    def scan(columns: str) -> str:
        return (
            f"SELECT {columns} FROM tasks WHERE status = 'queued' AND run_at <= %s AND "
            f"queue = %s{only} ORDER BY priority DESC, run_at LIMIT %s{d.skip_locked}"
        )

    if len(queues) == 1:
        return scan("id, status"), [now, queues[0], *extra, limit]
    one = scan("id, status, priority, run_at")
    arms = " UNION ALL ".join(f"SELECT * FROM ({one}) AS q{i}" for i in range(len(queues)))
    params = [v for q in queues for v in (now, q, *extra, limit)]
    text = f"SELECT id, status FROM ({arms}) AS qs ORDER BY priority DESC, run_at LIMIT %s"
    return text, [*params, limit]


async def claim(
    conn: Conn,
    d: Dialect,
    worker: str,
    queues: list[str],
    limit: int,
    now: float,
    lease_until: float,
    workflows: list[str] | None = None,
) -> list[Claimed]:
    in_queues, qs = queue_match(d, queues)
    only = ""
    if workflows is not None:  # a worker takes only what it can run (rolling deploys)
        only = f" AND workflow {d.any_of}"
    wf = None if workflows is None else d.list_param(workflows)
    # Three cheap index scans: new work, due timers and backoffs, expired leases.
    picked: list[Row] = await conn.fetchall(*queued_pick(d, queues, only, now, wf, limit))
    for condition, order in (
        ("status = 'waiting' AND run_at <= %s", "run_at"),
        ("status = 'running' AND lease_expires_at < %s", "lease_expires_at"),
    ):
        room = limit - len(picked)
        if room <= 0:
            break
        picked += await conn.fetchall(
            f"SELECT id, status FROM tasks WHERE {condition} AND {in_queues}{only} "
            f"ORDER BY {order} LIMIT %s{d.skip_locked}",
            (now, qs, *(() if wf is None else (wf,)), room),
        )
    if not picked:
        return []
    prior = {r["id"]: r["status"] for r in picked}
    ids = d.list_param(list(prior))
    rows = await conn.fetchall(
        "UPDATE tasks SET status = 'running', attempt = attempt + 1, lease_owner = %s, "
        "lease_expires_at = %s, started_at = COALESCE(started_at, %s), updated_at = %s, "
        f"wait_reason = NULL, wait_signals = NULL WHERE id {d.any_of} RETURNING {TASK_COLUMNS}",
        (worker, lease_until, now, now, ids),
    )
    tasks = [task_from_row(r) for r in rows]
    # The `task.started` events, read from the claimed rows by the database: one
    # statement per prior status (almost always one: all were queued).
    for status in sorted({prior[t.id] for t in tasks}):
        await conn.execute(
            events.claimed_from_tasks(d),
            (
                now,
                status,
                worker,
                events.claimed_decision(status),
                d.list_param([t.id for t in tasks if prior[t.id] == status]),
            ),
        )
    steps: dict[str, dict[int, StepRecord]] = {t.id: {} for t in tasks}
    approvals: dict[str, dict[int, Approval]] = {t.id: {} for t in tasks}
    # A task on its first run has no step log and no approvals yet, unless it is a fork
    # (which starts from a copy of its origin's log): those two reads are for the rest.
    replaying = [t.id for t in tasks if t.attempt > 1 or t.forked_from is not None]
    if replaying:
        rids = d.list_param(replaying)
        for r in await conn.fetchall(
            f"SELECT {STEP_COLUMNS} FROM steps WHERE task_id {d.any_of} ORDER BY seq", (rids,)
        ):
            steps[r["task_id"]][r["seq"]] = step_from_row(r)
        for r in await conn.fetchall(
            f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE task_id {d.any_of}", (rids,)
        ):
            approvals[r["task_id"]][r["seq"]] = approval_from_row(r)
    signals: dict[str, list[SignalRecord]] = {t.id: [] for t in tasks}
    for r in await conn.fetchall(
        f"SELECT {SIGNAL_COLUMNS} FROM signals "
        f"WHERE task_id {d.any_of} AND consumed_seq IS NULL ORDER BY id",
        (ids,),
    ):
        signals[r["task_id"]].append(signal_from_row(r))
    return [
        Claimed(
            task=t,
            steps=steps[t.id],
            signals=signals[t.id],
            approvals=approvals[t.id],
            recovered=prior[t.id] == "running",
        )
        for t in tasks
    ]


async def heartbeat(
    conn: Conn, d: Dialect, worker: str, task_ids: list[str], lease_until: float
) -> dict[str, bool]:
    rows = await conn.fetchall(
        "UPDATE tasks SET lease_expires_at = %s WHERE lease_owner = %s AND status = 'running' "
        f"AND id {d.any_of} RETURNING id, cancel_requested",
        (lease_until, worker, d.list_param(task_ids)),
    )
    return {r["id"]: bool(r["cancel_requested"]) for r in rows}
