"""Housekeeping: purging ended tasks (with their notifications and dead-letter states)."""

from __future__ import annotations

from tether.store.sql.core import Conn, Dialect
from tether.store.sql.dlq import forget_members
from tether.store.sql.spend import forget_tasks


async def purge(conn: Conn, d: Dialect, finished_before: float, batch: int, now: float) -> int:
    rows = await conn.fetchall(
        "SELECT id FROM tasks WHERE finished_at < %s ORDER BY finished_at "
        f"LIMIT %s{d.skip_locked}",  # concurrent sweepers take disjoint batches
        (finished_before, batch),
    )
    if not rows:
        return 0
    ids = d.list_param([r["id"] for r in rows])
    await forget_members(conn, d, ids, now)  # open dead letters leave their groups
    await forget_tasks(conn, d, ids)  # their spend lines (the day lines stay)
    for table, column in (
        ("steps", "task_id"),
        ("signals", "task_id"),
        ("approvals", "task_id"),
        ("events", "task_id"),
        ("idempotency_keys", "task_id"),
        ("notifications", "task_id"),
        ("webhook_deliveries", "task_id"),
        ("webhook_subscriptions", "task_id"),
        ("tasks", "id"),
    ):
        await conn.execute(f"DELETE FROM {table} WHERE {column} {d.any_of}", (ids,))
    return len(rows)
