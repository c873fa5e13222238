"""Worker presence: which workers are alive and what they claim (ADR 64).

A worker records itself when it starts and again every few seconds, and removes itself
when it stops; one that vanished is simply seen no more. Read with the queued tasks by
(workflow, version), this says which tasks no live worker would ever claim.
"""

from __future__ import annotations

from tether import serde
from tether.store.base import QueuedVersion, WorkerPresence
from tether.store.sql.core import Conn

FORGET_AFTER = 86400.0
"""Seconds after which the record of a worker not seen since is deleted."""


async def worker_seen(conn: Conn, w: WorkerPresence) -> None:
    await conn.execute(
        "INSERT INTO workers (id, queues, workflows, started_at, seen_at) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET queues = "
        "excluded.queues, workflows = excluded.workflows, seen_at = excluded.seen_at",
        (
            w.id,
            serde.dumps(w.queues),
            serde.dumps([list(p) for p in w.workflows]),
            w.started_at,
            w.seen_at,
        ),
    )
    await conn.execute("DELETE FROM workers WHERE seen_at < %s", (w.seen_at - FORGET_AFTER,))


async def worker_gone(conn: Conn, worker_id: str) -> None:
    await conn.execute("DELETE FROM workers WHERE id = %s", (worker_id,))


async def live_workers(conn: Conn, seen_since: float) -> list[WorkerPresence]:
    rows = await conn.fetchall(
        "SELECT id, queues, workflows, started_at, seen_at FROM workers "
        "WHERE seen_at >= %s ORDER BY id",
        (seen_since,),
    )
    return [
        WorkerPresence(
            id=r["id"],
            queues=serde.loads(r["queues"]),
            workflows=[(str(name), int(v)) for name, v in serde.loads(r["workflows"])],
            started_at=r["started_at"],
            seen_at=r["seen_at"],
        )
        for r in rows
    ]


async def queued_by_version(conn: Conn, now: float) -> list[QueuedVersion]:
    rows = await conn.fetchall(
        "SELECT queue, workflow, workflow_version, COUNT(*) AS n, MIN(run_at) AS oldest "
        "FROM tasks WHERE status = 'queued' AND run_at <= %s "
        "GROUP BY queue, workflow, workflow_version ORDER BY queue, workflow, workflow_version",
        (now,),
    )
    return [
        QueuedVersion(
            queue=r["queue"],
            workflow=r["workflow"],
            version=r["workflow_version"],
            tasks=int(r["n"]),
            oldest=max(0.0, now - float(r["oldest"])),
        )
        for r in rows
    ]
