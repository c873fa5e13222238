"""Claims and heartbeats: how a worker takes tasks and keeps its leases.

A claim takes only the (workflow, version) pairs its worker has (rolling deploys, ADRs
14 and 64), and fails, instead of recovering it once more, a task whose lease expired
`max_lease_expiries` times in a row with no step recorded in between: its runs keep
losing their worker (`WorkerLost`). PostgreSQL's one-statement claim
(`store/postgres/batch.py`, ADR 45) does the same in one statement; a contract test
keeps the two equal.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from tether import serde
from tether.errors import fingerprint
from tether.models import Approval, SignalRecord, StepRecord, Task, TaskError
from tether.store.base import Claimed, ClaimOutcome
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


WORKFLOW_KEY = "workflow || '@' || workflow_version"
"""A task's (workflow, version) as one text, `name@version`: a claim matches it against
its worker's list (`workflow_keys`). Unambiguous, since the version is an integer."""


def workflow_keys(workflows: Sequence[tuple[str, int]]) -> list[str]:
    """The `WORKFLOW_KEY` texts of (workflow, version) pairs."""
    return [f"{name}@{version}" for name, version in workflows]


def workflow_match(d: Dialect, workflows: Sequence[tuple[str, int]] | None) -> tuple[str, Any]:
    """The condition a claim's scans add for a worker's (workflow, version) pairs, and
    its parameter; `("", None)` when the claim takes any workflow."""
    if workflows is None:
        return "", None
    return f" AND {WORKFLOW_KEY} {d.any_of}", d.list_param(workflow_keys(workflows))


NO_LIMIT = 2**31 - 1
"""`max_lease_expiries` as the claims compare it when there is no limit (0)."""

NEXT_EXPIRIES = "CASE WHEN lease_expiry_steps = steps_done THEN lease_expiries + 1 ELSE 1 END"
"""A task's lease expiries in a row once the expiry being recovered counts: one more
when no step was recorded since the last one (`lease_expiry_steps`), else the first."""


def worker_lost_error(limit: int) -> TaskError:
    """Why a claim failed a task whose lease expired `limit` times in a row."""
    message = (
        f"the task's worker was lost {limit} times in a row (max_lease_expiries): each "
        "time its lease expired with no new step recorded. A step may be crashing or "
        "stalling its worker (out of memory, a segfault, a kill, a blocked event loop); "
        "the task is not run again"
    )
    return TaskError("WorkerLost", message, fingerprint("WorkerLost", message, None))


@functools.lru_cache(maxsize=8)
def worker_lost_params(limit: int) -> tuple[str, str, str]:
    """(error JSON, fingerprint, message) a claim writes on a task it fails as lost."""
    err = worker_lost_error(limit)
    return serde.dumps(err.to_json()), err.fingerprint, err.message


def queued_pick(
    d: Dialect, queues: list[str], only: str, now: float, workflows: Any, limit: int
) -> tuple[str, list[Any]]:
    """`SELECT id, status` of the queued tasks a claim takes, in claim order (the fair
    rank: `fairness`, ADR 88), and its parameters. The `tasks_fair` index yields one
    queue's rows in that order, so the scan stops at the limit. A list of queues would
    make the database read and sort the whole backlog of those queues for every claim
    (ADR 54): several queues are scanned one by one, each up to the limit, and only
    those few rows are sorted together. `workflows` is the parameter of `only`, or
    None."""
    extra = [] if workflows is None else [workflows]

    def scan(columns: str) -> str:
        return (
            f"SELECT {columns} FROM tasks WHERE status = 'queued' AND fair_rank IS NOT NULL "
            f"AND queue = %s AND run_at <= %s{only} ORDER BY fair_rank LIMIT %s{d.skip_locked}"
        )

    if len(queues) == 1:
        return scan("id, status"), [queues[0], now, *extra, limit]
    one = scan("id, status, fair_rank")
    arms = " UNION ALL ".join(f"SELECT * FROM ({one}) AS q{i}" for i in range(len(queues)))
    params = [v for q in queues for v in (q, now, *extra, limit)]
    text = f"SELECT id, status FROM ({arms}) AS qs ORDER BY fair_rank LIMIT %s"
    return text, [*params, limit]


def delayed_pick(d: Dialect, in_queues: str, only: str) -> str:
    """`SELECT id, status` of queued tasks with no fair rank (submitted for later),
    due by a time, by due time (parameters: the time, the queues, `only`'s, a limit)."""
    return (
        "SELECT id, status FROM tasks WHERE status = 'queued' AND fair_rank IS NULL "
        f"AND run_at <= %s AND {in_queues}{only} ORDER BY run_at LIMIT %s{d.skip_locked}"
    )


async def claim(
    conn: Conn,
    d: Dialect,
    worker: str,
    queues: list[str],
    limit: int,
    now: float,
    lease_until: float,
    workflows: Sequence[tuple[str, int]] | None = None,
    max_lease_expiries: int = 0,
) -> ClaimOutcome:
    in_queues, qs = queue_match(d, queues)
    only, wf = workflow_match(d, workflows)
    cap = max_lease_expiries or NO_LIMIT
    extra = () if wf is None else (wf,)
    # Four cheap index scans: new work, work submitted for later, due timers and
    # backoffs, expired leases.
    picked: list[Row] = await conn.fetchall(*queued_pick(d, queues, only, now, wf, limit))
    room = limit - len(picked)
    if room > 0:
        picked += await conn.fetchall(delayed_pick(d, in_queues, only), (now, qs, *extra, room))
    room = limit - len(picked)
    if room > 0:
        picked += await conn.fetchall(
            "SELECT id, status FROM tasks WHERE status = 'waiting' AND run_at <= %s AND "
            f"{in_queues}{only} ORDER BY run_at LIMIT %s{d.skip_locked}",
            (now, qs, *extra, room),
        )
    lost_rows: list[Row] = []
    room = limit - len(picked)
    if room > 0:
        expired = await conn.fetchall(
            f"SELECT id, status, lease_owner, {NEXT_EXPIRIES} AS expiries FROM tasks "
            f"WHERE status = 'running' AND lease_expires_at < %s AND {in_queues}{only} "
            f"ORDER BY lease_expires_at LIMIT %s{d.skip_locked}",
            (now, qs, *extra, room),
        )
        picked += [r for r in expired if r["expiries"] < cap]
        lost_rows = [r for r in expired if r["expiries"] >= cap]
    lost = await _fail_lost(conn, d, worker, lost_rows, cap, now) if lost_rows else []
    if not picked:
        return ClaimOutcome([], lost)
    prior = {r["id"]: r["status"] for r in picked}
    ids = d.list_param(list(prior))
    rows = await conn.fetchall(
        "UPDATE tasks SET status = 'running', attempt = attempt + 1, lease_owner = %s, "
        "lease_expires_at = %s, started_at = COALESCE(started_at, %s), updated_at = %s, "
        # A recovery counts the expiry (the SET reads the row as it was: its status is
        # the prior one).
        f"lease_expiries = CASE WHEN status = 'running' THEN {NEXT_EXPIRIES} "
        "ELSE lease_expiries END, lease_expiry_steps = CASE WHEN status = 'running' "
        "THEN steps_done ELSE lease_expiry_steps END, "
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
    claimed = [
        Claimed(
            task=t,
            steps=steps[t.id],
            signals=signals[t.id],
            approvals=approvals[t.id],
            recovered=prior[t.id] == "running",
        )
        for t in tasks
    ]
    return ClaimOutcome(claimed, lost)


async def _fail_lost(
    conn: Conn, d: Dialect, worker: str, expired: list[Row], limit: int, now: float
) -> list[Task]:
    """Fail the expired-lease tasks `expired` as `WorkerLost` instead of recovering
    them, with their `task.failed` events; return them as they now stand."""
    error, digest, message = worker_lost_params(limit)
    rows = await conn.fetchall(
        "UPDATE tasks SET status = 'failed', error = %s, error_fingerprint = %s, "
        "finished_at = %s, updated_at = %s, lease_owner = NULL, lease_expires_at = NULL, "
        f"run_at = NULL, lease_expiries = {NEXT_EXPIRIES}, lease_expiry_steps = steps_done "
        f"WHERE id {d.any_of} RETURNING {TASK_COLUMNS}",
        (error, digest, now, now, d.list_param([r["id"] for r in expired])),
    )
    lost = sorted((task_from_row(r) for r in rows), key=lambda t: t.id)
    by_id = {r["id"]: r for r in expired}
    await events.insert(
        conn,
        [
            events.worker_lost(
                t.id,
                t.tenant,
                t.attempt,
                worker,
                lost_worker=by_id[t.id]["lease_owner"],
                expiries=by_id[t.id]["expiries"],
                message=message,
                now=now,
            )
            for t in lost
        ],
    )
    return lost


async def heartbeat(
    conn: Conn, d: Dialect, worker: str, task_ids: list[str], lease_until: float
) -> dict[str, bool]:
    rows = await conn.fetchall(
        "UPDATE tasks SET lease_expires_at = %s WHERE lease_owner = %s AND status = 'running' "
        f"AND id {d.any_of} RETURNING id, cancel_requested",
        (lease_until, worker, d.list_param(task_ids)),
    )
    return {r["id"]: bool(r["cancel_requested"]) for r in rows}
