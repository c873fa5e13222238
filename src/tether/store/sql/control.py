"""Control of a task from outside: cancel, signals, forks."""

from __future__ import annotations

from tether import serde
from tether.errors import InvalidTransition
from tether.models import SignalRecord, Task, TaskPhase
from tether.store.base import NewTask
from tether.store.sql import dlq, events
from tether.store.sql.children import family_ended
from tether.store.sql.core import (
    STEP_COLUMNS,
    TERMINAL,
    Conn,
    Dialect,
    task_for_update,
    wake,
)
from tether.store.sql.intake import submit
from tether.store.sql.queries import get_task


async def cancel(
    conn: Conn,
    d: Dialect,
    task_id: str,
    tenant: str | None,
    by: str | None,
    now: float,
    compensate: bool = False,
) -> Task:
    row = await task_for_update(conn, d, task_id, tenant)
    status = row["status"]
    if status in TERMINAL:
        raise InvalidTransition(f"task {task_id} is already {status}")
    # With `compensate` a run ends the task, after undoing its completed steps (ADR 83):
    # a running task learns it when its run ends; another goes back to the queue. A task
    # already compensating (maybe waiting out a backoff) is left to finish doing so: its
    # run ends it as its cause says.
    if status == "running" or row["phase"] == "compensation":
        new = status
        phase = ", phase = 'compensation'" if compensate else ""
        await conn.execute(
            f"UPDATE tasks SET cancel_requested = 1{phase}, updated_at = %s WHERE id = %s",
            (now, task_id),
        )
    elif compensate:
        new = "queued"
        await conn.execute(
            "UPDATE tasks SET status = 'queued', cancel_requested = 1, phase = 'compensation', "
            "run_at = %s, wait_reason = NULL, wait_signals = NULL, updated_at = %s WHERE id = %s",
            (now, now, task_id),
        )
    else:
        new = "cancelled"
        await conn.execute(
            "UPDATE tasks SET status = 'cancelled', cancel_requested = 1, finished_at = %s, "
            "updated_at = %s, run_at = NULL, lease_owner = NULL, lease_expires_at = NULL "
            "WHERE id = %s",
            (now, now, task_id),
        )
    if status != "running":
        # Its open approvals leave the inbox: nobody may decide for a cancelled task.
        await conn.execute(
            "UPDATE approvals SET status = 'rejected', resolution = 'cancelled', "
            "decided_at = %s WHERE task_id = %s AND status = 'pending'",
            (now, task_id),
        )
        # Its end is a child's end (the parent wakes) and a parent's (children cancelled).
        parents = [row["parent_id"]] if row["parent_id"] is not None else []
        await family_ended(conn, d, parents, [task_id], now)
    await conn.execute(
        events.INSERT_EVENT,
        events.cancellation(
            task_id, row["tenant"], status, new, row["attempt"], by, now, compensate
        ),
    )
    task = await get_task(conn, task_id, None)
    assert task is not None
    return task


async def send_signal(
    conn: Conn,
    d: Dialect,
    task_id: str,
    tenant: str | None,
    name: str,
    payload: str,
    now: float,
) -> SignalRecord:
    row = await task_for_update(conn, d, task_id, tenant)
    if row["status"] in TERMINAL:
        raise InvalidTransition(f"task {task_id} is {row['status']} and takes no more signals")
    sig = await conn.fetchone(
        "INSERT INTO signals (task_id, name, payload, created_at) VALUES (%s, %s, %s, %s) "
        "RETURNING id",
        (task_id, name, payload, now),
    )
    assert sig is not None
    waits_for = await conn.fetchone("SELECT wait_signals FROM tasks WHERE id = %s", (task_id,))
    woke = row["status"] == "waiting" and name in (
        serde.loads(waits_for["wait_signals"] if waits_for else None) or []
    )
    if woke:
        await wake(conn, task_id, now)
    await conn.execute(
        events.INSERT_EVENT,
        events.signal_received(
            task_id, row["tenant"], row["status"], woke, row["attempt"], sig["id"], name, now
        ),
    )
    return SignalRecord(sig["id"], task_id, name, serde.loads(payload), now)


async def fork(
    conn: Conn,
    d: Dialect,
    task_id: str,
    tenant: str | None,
    new: NewTask,
    from_seq: int | None,
    now: float,
    action_id: str | None = None,
) -> Task:
    row = await task_for_update(conn, d, task_id, tenant)
    if row["status"] not in TERMINAL:
        raise InvalidTransition(f"task {task_id} is {row['status']}; only ended tasks re-run")
    new.forked_from = task_id
    new.fork_from_seq = from_seq
    await submit(conn, d, [new], now)
    limit = from_seq if from_seq is not None else 2**62
    compensating = new.phase == TaskPhase.COMPENSATION
    if not compensating:
        limit = min(limit, await _first_undone(conn, task_id))
    await conn.execute(
        f"INSERT INTO steps ({STEP_COLUMNS}) SELECT %s, seq, name, kind, status, attempts, "
        "result, error, started_at, finished_at, wake_at, meta, attempt_errors FROM steps "
        "WHERE task_id = %s AND status = 'succeeded' AND seq < %s",
        (new.id, task_id, limit),
    )
    if compensating:  # the fork's end is the compensation's, not the original's (ADR 83)
        await conn.execute(
            "UPDATE steps SET result = %s WHERE task_id = %s AND kind = 'compensating'",
            (serde.dumps(REQUESTED_CAUSE), new.id),
        )
    # The chain's first task: a step the fork executes again presents its key (ADR 63).
    root = row["fork_root"] or task_id
    await conn.execute(
        "UPDATE tasks SET steps_done = (SELECT COUNT(*) FROM steps WHERE task_id = %s), "
        "fork_root = %s, phase = %s WHERE id = %s",
        (new.id, root, str(new.phase), new.id),
    )
    # A re-run failed task leaves its dead-letter group's open members, whichever way
    # it was re-run (`action_id`: the dead-letter retry that did it).
    how = "compensated" if new.phase == TaskPhase.COMPENSATION else "retried"
    await dlq.close_retried(conn, row, new.id, action_id, now, how)
    await conn.execute(
        events.INSERT_EVENT,
        events.forked(
            task_id, row["tenant"], row["attempt"], new.id, from_seq, new.created_by, now
        ),
    )
    task = await get_task(conn, new.id, None)  # with the copied steps counted
    assert task is not None
    return task


REQUESTED_CAUSE = {"status": "failed", "decision": "compensated", "error": None}
"""The cause a compensation fork ends by: it succeeds once it has undone the steps."""


async def _first_undone(conn: Conn, task_id: str) -> int:
    """The first position a re-run of `task_id` must run again because a saga undid it
    (its compensation ran, or compensating began there): the steps from it on are not
    reused, their effects being gone (ADR 83). No saga: no limit."""
    rows = await conn.fetchall(
        "SELECT seq, kind, meta FROM steps WHERE task_id = %s "
        "AND kind IN ('compensating', 'compensation')",
        (task_id,),
    )
    firsts = [int(r["seq"]) for r in rows if r["kind"] == "compensating"]
    for r in rows:
        undone = (serde.loads(r["meta"]) or {}).get("compensates") if r["meta"] else None
        if r["kind"] == "compensation" and undone is not None:
            firsts.append(int(undone))
    return min(firsts, default=2**62)


async def retry_members(
    conn: Conn,
    d: Dialect,
    tenant: str,
    forks: list[tuple[str, NewTask]],
    action_id: str,
    now: float,
) -> list[tuple[str, str]]:
    """Re-run each failed task of `forks` that is still an open dead-letter member as
    its `NewTask`, from its failed step (its succeeded steps are copied, not run
    again); return the (task, new task) pairs done. The task's row is locked first, so
    two retries of one member racing on PostgreSQL fork it once."""
    done = []
    for task_id, new in forks:
        await task_for_update(conn, d, task_id, tenant)
        if not await dlq.is_open(conn, task_id):
            continue
        await fork(conn, d, task_id, tenant, new, None, now, action_id)
        done.append((task_id, new.id))
    return done
