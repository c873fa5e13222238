"""Reads: tasks, steps, events, queue health."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tether.models import Event, StepRecord, Task, TaskFilter
from tether.store.sql.core import (
    SHORT_ID_MATCH,
    STEP_COLUMNS,
    TASK_COLUMNS,
    Conn,
    Dialect,
    event_from_row,
    short_id_params,
    step_from_row,
    task_from_row,
)
from tether.store.sql.events import EVENT_COLUMNS


async def get_task(conn: Conn, task_id: str, tenant: str | None) -> Task | None:
    row = await conn.fetchone(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = %s", (task_id,))
    if row is None or (tenant is not None and row["tenant"] != tenant):
        return None
    return task_from_row(row)


async def get_tasks(conn: Conn, d: Dialect, task_ids: Sequence[str]) -> dict[str, Task]:
    """The tasks of `task_ids` that exist, by id (any tenant: the caller filters)."""
    found: dict[str, Task] = {}
    for start in range(0, len(task_ids), 500):
        chunk = task_ids[start : start + 500]
        for row in await conn.fetchall(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE id {d.any_of}", (d.list_param(chunk),)
        ):
            found[row["id"]] = task_from_row(row)
    return found


async def list_tasks(conn: Conn, d: Dialect, flt: TaskFilter) -> list[Task]:
    where: list[str] = []
    params: list[Any] = []
    if flt.tenant is not None:
        where.append("tenant = %s")
        params.append(flt.tenant)
    if flt.status:
        where.append(f"status {d.any_of}")
        params.append(d.list_param([str(s) for s in flt.status]))
    for column, value in (
        ("workflow", flt.workflow),
        ("correlation_id", flt.correlation_id),
        ("forked_from", flt.forked_from),
        ("parent_id", flt.parent_id),
        ("error_fingerprint", flt.error_fingerprint),
    ):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if flt.created_after is not None:
        where.append("created_at >= %s")
        params.append(flt.created_after)
    if flt.created_before is not None:
        where.append("created_at < %s")
        params.append(flt.created_before)
    if flt.after_id is not None:
        where.append("id < %s")
        params.append(flt.after_id)
    if flt.short_id is not None:
        where.append(SHORT_ID_MATCH)
        params.extend(short_id_params(flt.short_id))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    params.append(flt.limit)
    rows = await conn.fetchall(
        f"SELECT {TASK_COLUMNS} FROM tasks {clause} ORDER BY id DESC LIMIT %s", params
    )
    return [task_from_row(r) for r in rows]


async def get_steps(conn: Conn, task_id: str) -> list[StepRecord]:
    rows = await conn.fetchall(
        f"SELECT {STEP_COLUMNS} FROM steps WHERE task_id = %s ORDER BY seq", (task_id,)
    )
    return [step_from_row(r) for r in rows]


async def list_events(
    conn: Conn, d: Dialect, tenant: str | None, task_id: str | None, after: int, limit: int
) -> list[Event]:
    where = ["id > %s" + d.committed_events]
    params: list[Any] = [after]
    if tenant is not None:
        where.append("tenant = %s")
        params.append(tenant)
    if task_id is not None:
        where.append("task_id = %s")
        params.append(task_id)
    params.append(limit)
    rows = await conn.fetchall(
        f"SELECT id, {EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT %s",
        params,
    )
    return [event_from_row(r) for r in rows]


async def count_by_status(conn: Conn, tenant: str | None) -> dict[tuple[str, str], int]:
    sql = "SELECT queue, status, COUNT(*) AS n FROM tasks"
    params: tuple[Any, ...] = ()
    if tenant is not None:
        sql += " WHERE tenant = %s"
        params = (tenant,)
    rows = await conn.fetchall(sql + " GROUP BY queue, status", params)
    return {(r["queue"], r["status"]): int(r["n"]) for r in rows}


async def oldest_queued(conn: Conn, now: float, tenant: str | None) -> dict[str, float]:
    sql = "SELECT queue, MIN(run_at) AS oldest FROM tasks WHERE status = 'queued' AND run_at <= %s"
    params: tuple[Any, ...] = (now,)
    if tenant is not None:
        sql += " AND tenant = %s"
        params = (now, tenant)
    rows = await conn.fetchall(sql + " GROUP BY queue", params)
    return {r["queue"]: max(0.0, now - float(r["oldest"])) for r in rows}


async def next_wake(conn: Conn, d: Dialect, queues: list[str]) -> float | None:
    qs = d.list_param(queues)
    best: float | None = None
    for status in ("queued", "waiting"):
        row = await conn.fetchone(
            f"SELECT MIN(run_at) AS due FROM tasks WHERE status = %s AND queue {d.any_of} "
            "AND run_at IS NOT NULL",
            (status, qs),
        )
        if row is not None and row["due"] is not None:
            due = float(row["due"])
            best = due if best is None else min(best, due)
    return best
