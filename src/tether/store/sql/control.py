"""Control of a task from outside: cancel, signals, forks."""

from __future__ import annotations

from tether import serde
from tether.errors import InvalidTransition
from tether.models import SignalRecord, Task
from tether.store.base import NewTask
from tether.store.sql import dlq, events
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
    conn: Conn, d: Dialect, task_id: str, tenant: str | None, by: str | None, now: float
) -> Task:
    row = await task_for_update(conn, d, task_id, tenant)
    status = row["status"]
    if status in TERMINAL:
        raise InvalidTransition(f"task {task_id} is already {status}")
    if status == "running":
        await conn.execute(
            "UPDATE tasks SET cancel_requested = 1, updated_at = %s WHERE id = %s", (now, task_id)
        )
    else:
        await conn.execute(
            "UPDATE tasks SET status = 'cancelled', cancel_requested = 1, finished_at = %s, "
            "updated_at = %s, run_at = NULL, lease_owner = NULL, lease_expires_at = NULL "
            "WHERE id = %s",
            (now, now, task_id),
        )
        # Its open approvals leave the inbox: nobody may decide for a cancelled task.
        await conn.execute(
            "UPDATE approvals SET status = 'rejected', resolution = 'cancelled', "
            "decided_at = %s WHERE task_id = %s AND status = 'pending'",
            (now, task_id),
        )
    await conn.execute(
        events.INSERT_EVENT,
        events.cancellation(task_id, row["tenant"], status, row["attempt"], by, now),
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
    await conn.execute(
        f"INSERT INTO steps ({STEP_COLUMNS}) SELECT %s, seq, name, kind, status, attempts, "
        "result, error, started_at, finished_at, wake_at, meta, attempt_errors FROM steps "
        "WHERE task_id = %s AND status = 'succeeded' AND seq < %s",
        (new.id, task_id, limit),
    )
    # The chain's first task: a step the fork executes again presents its key (ADR 63).
    root = row["fork_root"] or task_id
    await conn.execute(
        "UPDATE tasks SET steps_done = (SELECT COUNT(*) FROM steps WHERE task_id = %s), "
        "fork_root = %s WHERE id = %s",
        (new.id, root, new.id),
    )
    # A re-run failed task leaves its dead-letter group's open members, whichever way
    # it was re-run (`action_id`: the dead-letter retry that did it).
    await dlq.close_retried(conn, row, new.id, action_id, now)
    await conn.execute(
        events.INSERT_EVENT,
        events.forked(
            task_id, row["tenant"], row["attempt"], new.id, from_seq, new.created_by, now
        ),
    )
    task = await get_task(conn, new.id, None)  # with the copied steps counted
    assert task is not None
    return task


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
