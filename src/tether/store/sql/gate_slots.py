"""Slots and waiters of the step gates that keep state in the database (ADR 91): a step
limit's running steps, a half-open breaker's probes, and the steps waiting for either.

A slot is held by one step of one task, (task, seq). It is *live* while that task runs
with the attempt that took it and its lease is not expired, so a holder whose worker
died loses it when its task's lease does, with nothing to clean up; or, handed to a
woken waiter (no attempt yet), until `HANDOFF_TTL` passes. A step that finds no free
slot becomes a waiter; a freed slot is handed to the oldest waiter and its task woken,
so it runs next even if newcomers arrive first. Every function here runs inside the
caller's transaction, which has locked the gate's own row (`step_limits`, `breakers`):
acquisitions and releases of one gate are serialized by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tether.store.sql import events
from tether.store.sql.core import TERMINAL, Conn, Dialect

LIMIT = "limit"
"""The gate of step limits (scope `*`, name: the integration)."""
BREAKER = "breaker"
"""The gate of breakers: its slots are a half-open breaker's probes."""

HANDOFF_TTL = 30.0
"""Seconds a slot handed to a woken waiter is kept for it: time enough to be claimed
and replayed; past it the slot is anyone's again."""

KEY = "gate = %s AND scope = %s AND name = %s"

LIVE = (
    "EXISTS (SELECT 1 FROM tasks t WHERE t.id = s.task_id AND ("
    f"(s.attempt IS NULL AND s.reserved_until > %s AND t.status NOT IN {TERMINAL!r}) OR "
    "(s.attempt IS NOT NULL AND t.status = 'running' AND t.attempt = s.attempt "
    "AND t.lease_expires_at > %s)))"
)
"""A slot row `s` is held: by a running attempt with a live lease, or handed over."""


@dataclass(frozen=True)
class Gate:
    """One gate's key: which control, whose (`*` or a tenant), of what integration."""

    gate: str
    scope: str
    name: str

    @property
    def params(self) -> tuple[str, str, str]:
        return (self.gate, self.scope, self.name)


async def live_slots(conn: Conn, g: Gate, now: float) -> int:
    """How many slots of `g` are held now."""
    row = await conn.fetchone(
        f"SELECT COUNT(*) AS n FROM gate_slots s WHERE {KEY} AND {LIVE}", (*g.params, now, now)
    )
    return int(row["n"]) if row is not None else 0


async def _sweep(conn: Conn, g: Gate, now: float) -> None:
    """Forget the slots of `g` no one holds any more (their task moved on, ended, or
    lost its lease), so counting stays a look at a few rows."""
    await conn.execute(
        f"DELETE FROM gate_slots AS s WHERE {KEY} AND NOT {LIVE}", (*g.params, now, now)
    )


async def acquire(
    conn: Conn, g: Gate, limit: int, task_id: str, seq: int, attempt: int, now: float
) -> bool:
    """Take a slot of `g` for step `seq` of `task_id` (running as `attempt`): the slot
    handed to it, else a free one while fewer than `limit` are held. Without one, the
    step is (still) a waiter, in its place in the line; False."""
    # One statement for all the step needs to know (its own slot, its place in line,
    # how many others hold one): an acquisition is a few round trips, not a dozen.
    own = f"FROM gate_slots WHERE {KEY} AND task_id = %s AND seq = %s"
    row = await conn.fetchone(
        f"SELECT (SELECT attempt {own}) AS attempt, (SELECT reserved_until {own}) AS until, "
        f"(SELECT COUNT(*) FROM gate_slots s WHERE {KEY} AND {LIVE} "
        "AND NOT (s.task_id = %s AND s.seq = %s)) AS held, "
        f"(SELECT COUNT(*) FROM gate_waiters WHERE task_id = %s AND seq = %s AND {KEY}) "
        "AS waiting",
        (
            *g.params,
            task_id,
            seq,
            *g.params,
            task_id,
            seq,
            *g.params,
            now,
            now,
            task_id,
            seq,
            task_id,
            seq,
            *g.params,
        ),
    )
    assert row is not None
    handed = row["attempt"] is None and row["until"] is not None and row["until"] > now
    if not handed and row["attempt"] != attempt and int(row["held"]) >= limit:
        await _wait(conn, g, task_id, seq, now)
        return False
    await conn.execute(
        "INSERT INTO gate_slots (gate, scope, name, task_id, seq, attempt, reserved_until, "
        "since) VALUES (%s, %s, %s, %s, %s, %s, NULL, %s) ON CONFLICT (gate, scope, name, "
        "task_id, seq) DO UPDATE SET attempt = excluded.attempt, reserved_until = NULL",
        (*g.params, task_id, seq, attempt, now),
    )
    if int(row["waiting"]):
        await conn.execute(
            f"DELETE FROM gate_waiters WHERE task_id = %s AND seq = %s AND {KEY}",
            (task_id, seq, *g.params),
        )
    return True


async def _wait(conn: Conn, g: Gate, task_id: str, seq: int, now: float) -> None:
    """Put the step in `g`'s line (kept in its place if it was there already)."""
    await conn.execute(
        "INSERT INTO gate_waiters (task_id, seq, gate, scope, name, since, woken) "
        "VALUES (%s, %s, %s, %s, %s, %s, 0) ON CONFLICT (task_id, seq, gate, scope, name) "
        "DO UPDATE SET woken = 0",
        (task_id, seq, *g.params, now),
    )


async def wait(conn: Conn, g: Gate, task_id: str, seq: int, now: float) -> None:
    """Record that step `seq` of `task_id` waits at `g` (a breaker's held steps), to be
    woken when it lets steps through."""
    await _wait(conn, g, task_id, seq, now)


async def release(
    conn: Conn,
    d: Dialect,
    g: Gate,
    limit: int,
    task_id: str,
    seq: int,
    attempt: int,
    now: float,
    decision: str,
) -> list[str]:
    """Give up the slot step `seq` of `task_id` took as `attempt`, and hand the slots
    now free to the oldest waiters; the queues of the tasks woken."""
    await conn.execute(
        f"DELETE FROM gate_slots WHERE {KEY} AND task_id = %s AND seq = %s AND attempt = %s",
        (*g.params, task_id, seq, attempt),
    )
    return await hand_off(conn, d, g, limit, now, decision)


async def hand_off(
    conn: Conn, d: Dialect, g: Gate, limit: int, now: float, decision: str
) -> list[str]:
    """Hand each free slot of `g` to the oldest waiter not woken yet, and wake its task
    (`decision` names why, in its `task.queued` event); the queues of the tasks woken."""
    rows = await conn.fetchall(
        f"SELECT w.task_id, w.seq FROM gate_waiters w JOIN tasks t ON t.id = w.task_id "
        "WHERE w.gate = %s AND w.scope = %s AND w.name = %s AND w.woken = 0 "
        f"AND t.status NOT IN {TERMINAL!r} ORDER BY w.since, w.task_id, w.seq LIMIT %s",
        (*g.params, limit),
    )
    if not rows:  # no one waits: nothing else to do (the usual case)
        return []
    await _sweep(conn, g, now)
    await _forget_ended(conn, g)
    free = limit - await live_slots(conn, g, now)
    rows = rows[: max(0, free)]
    for r in rows:
        await conn.execute(
            "INSERT INTO gate_slots (gate, scope, name, task_id, seq, attempt, "
            "reserved_until, since) VALUES (%s, %s, %s, %s, %s, NULL, %s, %s) ON CONFLICT "
            "(gate, scope, name, task_id, seq) DO UPDATE SET attempt = NULL, "
            "reserved_until = excluded.reserved_until",
            (*g.params, r["task_id"], r["seq"], now + HANDOFF_TTL, now),
        )
    return await _wake(conn, d, g, [(r["task_id"], r["seq"]) for r in rows], now, decision)


async def wake_all(conn: Conn, d: Dialect, g: Gate, now: float, decision: str) -> list[str]:
    """Wake every step waiting at `g` (a breaker closed); the queues of the tasks woken."""
    await _forget_ended(conn, g)
    rows = await conn.fetchall(
        f"SELECT task_id, seq FROM gate_waiters WHERE {KEY} AND woken = 0", g.params
    )
    return await _wake(conn, d, g, [(r["task_id"], r["seq"]) for r in rows], now, decision)


async def _forget_ended(conn: Conn, g: Gate) -> None:
    await conn.execute(
        f"DELETE FROM gate_waiters WHERE {KEY} AND task_id IN "
        f"(SELECT id FROM tasks WHERE status IN {TERMINAL!r})",
        g.params,
    )


async def _wake(
    conn: Conn,
    d: Dialect,
    g: Gate,
    steps: Sequence[tuple[str, int]],
    now: float,
    decision: str,
) -> list[str]:
    """Queue again, now, the tasks of the waiting `steps` that are `waiting`, and take
    those steps out of `g`'s line; the others (their task still running on its way to
    suspending, or queued already) are marked woken, so that their suspension queues
    them again at once (`take_wake_up`). The queues of the tasks queued.

    The tasks' rows are locked first, as a suspension locks its task's row before it
    looks for a wake-up: either this sees the task waiting, or the suspension sees the
    mark (on PostgreSQL a mark not yet committed would be missed otherwise)."""
    if not steps:
        return []
    found = await conn.fetchall(
        f"SELECT id, status FROM tasks WHERE id {d.any_of} ORDER BY id{d.lock_rows}",
        (d.list_param(sorted({task for task, _ in steps})),),
    )
    parked = [r["id"] for r in found if r["status"] == "waiting"]
    rows = []
    if parked:
        rows = await conn.fetchall(
            "UPDATE tasks SET status = 'queued', run_at = %s, wait_reason = NULL, "
            f"wait_signals = NULL, updated_at = %s WHERE id {d.any_of} "
            "RETURNING id, tenant, attempt, queue",
            (now, now, d.list_param(parked)),
        )
        await events.insert(
            conn,
            [events.woken(r["id"], r["tenant"], r["attempt"], now, decision) for r in rows],
        )
    queued = set(parked)
    for task_id, seq in steps:
        await conn.execute(
            "DELETE FROM gate_waiters WHERE task_id = %s AND seq = %s AND " + KEY
            if task_id in queued
            else "UPDATE gate_waiters SET woken = 1 WHERE task_id = %s AND seq = %s AND " + KEY,
            (task_id, seq, *g.params),
        )
    return sorted({r["queue"] for r in rows})


async def take_wake_up(conn: Conn, task_id: str) -> bool:
    """Whether a gate woke a step of `task_id` while the task was still running (so
    the wake-up found nothing waiting): consumed here, by the task's suspension, which
    then queues the task again at once instead of parking it."""
    rows = await conn.fetchall(
        "DELETE FROM gate_waiters WHERE task_id = %s AND woken = 1 RETURNING seq", (task_id,)
    )
    return bool(rows)
