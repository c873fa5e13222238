"""Child tasks and their parents (ADR 82): what a task's end does to its family.

A child task carries `parent_id`, the parent's call site `parent_seq` (the step-log
position where the parent records the child's outcome) and `parent_policy`. When a
child ends, a parent that waits is queued again (it replays and reads the outcome);
when a parent ends, its unfinished children whose policy is `cancel` are cancelled:
at once when they are queued or waiting (and so, in turn, their own children), by
`cancel_requested` when they run. Every such change is written in the transaction of
the end that causes it.
"""

from __future__ import annotations

from collections.abc import Sequence

from tether.models import Task
from tether.store.sql import events
from tether.store.sql.core import TASK_COLUMNS, TERMINAL, Conn, Dialect, task_from_row

_ENDED = f"c.status IN {TERMINAL!r}"
_UNRECORDED = (
    "NOT EXISTS (SELECT 1 FROM steps s WHERE s.task_id = c.parent_id AND s.seq = c.parent_seq "
    "AND s.status <> 'pending')"
)
"""The parent's log holds no outcome for the child `c` yet."""


async def family_ended(
    conn: Conn, d: Dialect, parents: Sequence[str], ended: Sequence[str], now: float
) -> None:
    """Tasks ended in this transaction: wake the waiting `parents` of those that were
    children, and cancel the children (policy `cancel`) of those in `ended`."""
    if parents:
        await wake_parents(conn, d, parents, now)
    if ended:
        await cancel_children(conn, d, ended, now)


async def wake_parents(conn: Conn, d: Dialect, parents: Sequence[str], now: float) -> None:
    """Queue again, now, each of `parents` that waits (a child of it ended)."""
    rows = await conn.fetchall(
        "UPDATE tasks SET status = 'queued', run_at = %s, wait_reason = NULL, "
        f"wait_signals = NULL, updated_at = %s WHERE id {d.any_of} AND status = 'waiting' "
        "RETURNING id, tenant, attempt",
        (now, now, d.list_param(sorted(set(parents)))),
    )
    await events.insert(
        conn, [events.woken(r["id"], r["tenant"], r["attempt"], now, "child_ended") for r in rows]
    )


async def cancel_children(conn: Conn, d: Dialect, parents: Sequence[str], now: float) -> None:
    """Cancel the unfinished children of `parents` whose policy is `cancel`, and so on
    down: queued and waiting ones end `cancelled` now, running ones are asked to stop."""
    frontier = sorted(set(parents))
    while frontier:
        rows = await conn.fetchall(
            "SELECT id, tenant, status, attempt, parent_id FROM tasks WHERE parent_id "
            f"{d.any_of} AND parent_policy = 'cancel' AND status NOT IN {TERMINAL!r} "
            f"ORDER BY id{d.lock_rows}",
            (d.list_param(frontier),),
        )
        running = [r["id"] for r in rows if r["status"] == "running"]
        idle = [r["id"] for r in rows if r["status"] != "running"]
        if running:
            await conn.execute(
                f"UPDATE tasks SET cancel_requested = 1, updated_at = %s WHERE id {d.any_of}",
                (now, d.list_param(running)),
            )
        if idle:
            await conn.execute(
                "UPDATE tasks SET status = 'cancelled', cancel_requested = 1, finished_at = %s, "
                "updated_at = %s, run_at = NULL, lease_owner = NULL, lease_expires_at = NULL "
                f"WHERE id {d.any_of}",
                (now, now, d.list_param(idle)),
            )
            # As for any cancelled task: its open approvals leave the inbox.
            await conn.execute(
                "UPDATE approvals SET status = 'rejected', resolution = 'cancelled', "
                f"decided_at = %s WHERE task_id {d.any_of} AND status = 'pending'",
                (now, d.list_param(idle)),
            )
        await events.insert(
            conn,
            [
                events.cancellation(
                    r["id"],
                    r["tenant"],
                    r["status"],
                    "running" if r["status"] == "running" else "cancelled",
                    r["attempt"],
                    f"parent:{r['parent_id']}",
                    now,
                    False,
                )
                for r in rows
            ],
        )
        frontier = idle


async def ended_child_unrecorded(conn: Conn, parent_id: str) -> bool:
    """Whether a child of `parent_id` ended whose outcome the parent's log lacks."""
    row = await conn.fetchone(
        f"SELECT 1 FROM tasks c WHERE c.parent_id = %s AND {_ENDED} AND {_UNRECORDED} LIMIT 1",
        (parent_id,),
    )
    return row is not None


async def ended_children(conn: Conn, parent_id: str) -> dict[int, Task]:
    """The ended children of `parent_id` whose outcome its log lacks, by call site."""
    columns = ", ".join(f"c.{c.strip()}" for c in TASK_COLUMNS.split(","))
    rows = await conn.fetchall(
        f"SELECT {columns}, c.parent_seq FROM tasks c WHERE c.parent_id = %s AND {_ENDED} "
        f"AND {_UNRECORDED}",
        (parent_id,),
    )
    return {r["parent_seq"]: task_from_row(r) for r in rows}
