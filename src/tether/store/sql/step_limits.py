"""Step limits: at most `max_running` running steps of an integration, fleet-wide; the
slots and the line of waiters are `sql.gate_slots`', under gate `limit` (ADR 91)."""

from __future__ import annotations

from tether.models.rollouts import EVERY_TENANT
from tether.models.step_limits import StepLimit, StepLimitUsage
from tether.store.sql import gate_slots
from tether.store.sql.core import TERMINAL, Conn, Dialect
from tether.store.sql.gate_slots import LIMIT, LIVE, Gate

SLOT_FREED = "slot_freed"
"""The decision of the `task.queued` event of a waiter handed a freed slot."""


def _gate(integration: str) -> Gate:
    return Gate(LIMIT, EVERY_TENANT, integration)


async def _lock(conn: Conn, d: Dialect, limit: StepLimit, now: float) -> None:
    """Lock the limit's row (creating it, or storing a changed limit): every change of
    its slots is serialized by it."""
    row = await conn.fetchone(
        f"SELECT max_running FROM step_limits WHERE integration = %s{d.lock_rows}",
        (limit.integration,),
    )
    if row is None or int(row["max_running"]) != limit.max_running:
        await conn.execute(
            "INSERT INTO step_limits (integration, max_running, updated_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (integration) DO UPDATE SET max_running = excluded.max_running, "
            "updated_at = excluded.updated_at",
            (limit.integration, limit.max_running, now),
        )


async def acquire_step_slot(
    conn: Conn, d: Dialect, limit: StepLimit, task_id: str, seq: int, attempt: int, now: float
) -> bool:
    """Take a running slot of `limit` for step `seq` of `task_id`; False (and the step
    waits in line) when they are all held."""
    await _lock(conn, d, limit, now)
    return await gate_slots.acquire(
        conn, _gate(limit.integration), limit.max_running, task_id, seq, attempt, now
    )


async def release_step_slot(
    conn: Conn, d: Dialect, limit: StepLimit, task_id: str, seq: int, attempt: int, now: float
) -> list[str]:
    """Free the slot step `seq` of `task_id` held and hand it to the oldest waiter; the
    queues of the tasks woken."""
    await _lock(conn, d, limit, now)
    return await gate_slots.release(
        conn,
        d,
        _gate(limit.integration),
        limit.max_running,
        task_id,
        seq,
        attempt,
        now,
        SLOT_FREED,
    )


async def step_limit_usage(conn: Conn, now: float, tenant: str | None) -> list[StepLimitUsage]:
    """Every stored limit with its running and waiting steps: of `tenant`'s tasks, or
    (None) of every tenant's."""
    limits = await conn.fetchall(
        "SELECT integration, max_running FROM step_limits ORDER BY integration"
    )
    mine = "" if tenant is None else " AND t.tenant = %s"
    extra: tuple[str, ...] = () if tenant is None else (tenant,)
    out = []
    for row in limits:
        g = _gate(row["integration"])
        running = await conn.fetchone(
            "SELECT COUNT(*) AS n FROM gate_slots s JOIN tasks t ON t.id = s.task_id "
            f"WHERE s.gate = %s AND s.scope = %s AND s.name = %s AND {LIVE}{mine}",
            (*g.params, now, now, *extra),
        )
        waiting = await conn.fetchone(
            "SELECT COUNT(*) AS n FROM gate_waiters w JOIN tasks t ON t.id = w.task_id "
            f"WHERE w.gate = %s AND w.scope = %s AND w.name = %s "
            f"AND t.status NOT IN {TERMINAL!r}{mine}",
            (*g.params, *extra),
        )
        out.append(
            StepLimitUsage(
                row["integration"],
                int(row["max_running"]),
                int(running["n"]) if running is not None else 0,
                int(waiting["n"]) if waiting is not None else 0,
            )
        )
    return out
