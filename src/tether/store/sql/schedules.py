"""Schedules: their rows, the agenda, and the firing that moves a schedule on and starts
its tick's tasks in one transaction (ADR 77)."""

from __future__ import annotations

from typing import Any

from tether import serde
from tether.errors import ScheduleExists
from tether.models.schedules import MissedTicks, Schedule, ScheduleOrigin, ScheduleStatus
from tether.store.base import Submitted
from tether.store.schedules import Agenda, Firing
from tether.store.sql.core import Conn, Dialect, Row
from tether.store.sql.intake import submit

COLUMNS = (
    "tenant, name, workflow, input, cron, timezone, missed, max_missed, status, next_at, "
    "origin, last_tick_at, last_task_id, last_error, revision, created_by, created_at, "
    "updated_at"
)
DEFINITION = ("workflow", "input", "cron", "timezone", "missed", "max_missed")
"""The columns a declaration in code owns (status and progress are the schedule's)."""


def schedule_from_row(row: Row) -> Schedule:
    return Schedule(
        tenant=row["tenant"],
        name=row["name"],
        workflow=row["workflow"],
        input=serde.loads(row["input"]),
        cron=row["cron"],
        timezone=row["timezone"],
        missed=MissedTicks(row["missed"]),
        max_missed=row["max_missed"],
        status=ScheduleStatus(row["status"]),
        next_at=row["next_at"],
        origin=ScheduleOrigin(row["origin"]),
        last_tick_at=row["last_tick_at"],
        last_task_id=row["last_task_id"],
        last_error=row["last_error"],
        revision=row["revision"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _params(s: Schedule) -> tuple[Any, ...]:
    return (
        s.tenant,
        s.name,
        s.workflow,
        serde.dumps(s.input),
        s.cron,
        s.timezone,
        str(s.missed),
        s.max_missed,
        str(s.status),
        s.next_at,
        str(s.origin),
        s.created_by,
        s.created_at,
        s.updated_at,
    )


_INSERT = (
    "INSERT INTO schedules (tenant, name, workflow, input, cron, timezone, missed, "
    "max_missed, status, next_at, origin, created_by, created_at, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
)


async def create_schedule(conn: Conn, schedule: Schedule) -> Schedule:
    row = await conn.fetchone(
        _INSERT + "ON CONFLICT (tenant, name) DO NOTHING RETURNING name", _params(schedule)
    )
    if row is None:
        raise ScheduleExists(f"schedule {schedule.name!r} exists already")
    found = await get_schedule(conn, schedule.tenant, schedule.name)
    assert found is not None
    return found


async def declare_schedules(conn: Conn, schedules: list[Schedule], now: float) -> None:
    changed = " OR ".join(f"schedules.{c} <> excluded.{c}" for c in DEFINITION)
    moved = "schedules.cron <> excluded.cron OR schedules.timezone <> excluded.timezone"
    for s in schedules:
        # Several processes declare the same schedules as they start: only a change of
        # the definition writes (and a paused schedule stays paused, without a next tick).
        await conn.execute(
            _INSERT
            + "ON CONFLICT (tenant, name) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in DEFINITION)
            + ", origin = excluded.origin, revision = schedules.revision + 1, "
            f"updated_at = excluded.updated_at, next_at = CASE WHEN schedules.status = "
            f"'paused' THEN NULL WHEN {moved} THEN excluded.next_at "
            f"ELSE schedules.next_at END WHERE {changed}",
            _params(s),
        )


async def get_schedule(conn: Conn, tenant: str, name: str) -> Schedule | None:
    row = await conn.fetchone(
        f"SELECT {COLUMNS} FROM schedules WHERE tenant = %s AND name = %s", (tenant, name)
    )
    return None if row is None else schedule_from_row(row)


async def list_schedules(
    conn: Conn, tenant: str | None, after: str | None, limit: int
) -> list[Schedule]:
    where, params = ["name > %s"], [after or ""]
    if tenant is not None:
        where.append("tenant = %s")
        params.append(tenant)
    rows = await conn.fetchall(
        f"SELECT {COLUMNS} FROM schedules WHERE {' AND '.join(where)} "
        "ORDER BY name, tenant LIMIT %s",
        (*params, limit),
    )
    return [schedule_from_row(r) for r in rows]


async def set_schedule_status(
    conn: Conn, tenant: str, name: str, paused: bool, next_at: float | None, now: float
) -> Schedule | None:
    status, other = ("paused", "active") if paused else ("active", "paused")
    await conn.execute(
        "UPDATE schedules SET status = %s, next_at = %s, revision = revision + 1, "
        "updated_at = %s WHERE tenant = %s AND name = %s AND status = %s",
        (status, None if paused else next_at, now, tenant, name, other),
    )
    return await get_schedule(conn, tenant, name)


async def delete_schedule(conn: Conn, tenant: str, name: str) -> bool:
    return bool(
        await conn.execute("DELETE FROM schedules WHERE tenant = %s AND name = %s", (tenant, name))
    )


async def schedule_agenda(
    conn: Conn, d: Dialect, now: float, workflows: list[str], limit: int
) -> Agenda:
    names = d.list_param(workflows)
    rows = await conn.fetchall(
        f"SELECT {COLUMNS} FROM schedules WHERE next_at <= %s AND workflow {d.any_of} "
        "ORDER BY next_at LIMIT %s",
        (now, names, limit),
    )
    upcoming = await conn.fetchone(
        f"SELECT MIN(next_at) AS next_at FROM schedules WHERE next_at > %s AND workflow {d.any_of}",
        (now, names),
    )
    next_at = None if upcoming is None else upcoming["next_at"]
    return Agenda([schedule_from_row(r) for r in rows], next_at)


async def fire_schedule(
    conn: Conn, d: Dialect, firing: Firing, now: float
) -> list[Submitted] | None:
    # The compare-and-set comes first: on PostgreSQL a racing scheduler's UPDATE waits
    # here for this transaction, then finds the revision moved and changes nothing.
    moved = await conn.fetchone(
        "UPDATE schedules SET next_at = %s, revision = revision + 1, last_error = %s, "
        "last_tick_at = COALESCE(%s, last_tick_at), updated_at = %s "
        "WHERE tenant = %s AND name = %s AND revision = %s AND status = 'active' "
        "RETURNING revision",
        (
            firing.next_at,
            firing.error,
            firing.last_tick_at,
            now,
            firing.tenant,
            firing.name,
            firing.revision,
        ),
    )
    if moved is None:
        return None
    if not firing.tasks:
        return []
    done = await submit(conn, d, firing.tasks, now)
    await conn.execute(
        "UPDATE schedules SET last_task_id = %s WHERE tenant = %s AND name = %s",
        (done[-1].task.id, firing.tenant, firing.name),
    )
    return done
