"""The notification outbox: the fan-out cursor over the events feed, and the
notifications themselves, claimed with leases by the workers that send them (ADR 69)."""

from __future__ import annotations

from tether import serde
from tether.models import Notification, NotificationRecord
from tether.store.sql.core import Conn, Dialect, Row

NOTIFICATION_COLUMNS = (
    "id, tenant, task_id, event_id, trigger, channel, message, status, attempts, next_at, "
    "last_error, created_at, sent_at"
)


def notification_from_row(row: Row) -> NotificationRecord:
    return NotificationRecord(
        id=row["id"],
        tenant=row["tenant"],
        task_id=row["task_id"],
        event_id=row["event_id"],
        trigger=row["trigger"],
        channel=row["channel"],
        message=Notification.from_json(serde.loads(row["message"])),
        status=row["status"],
        attempts=row["attempts"],
        next_at=row["next_at"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
    )


async def notify_position(conn: Conn, d: Dialect, name: str, now: float) -> int:
    """Where the cursor `name` stands; a new cursor starts at the head of the feed (what
    happened before the notifier first ran is not announced)."""
    row = await conn.fetchone("SELECT position FROM notify_cursors WHERE name = %s", (name,))
    if row is None:
        head = await conn.fetchone(
            f"SELECT COALESCE(MAX(id), 0) AS head FROM events WHERE 1 = 1{d.committed_events}"
        )
        await conn.execute(
            "INSERT INTO notify_cursors (name, position, updated_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO NOTHING",
            (name, int(head["head"]) if head else 0, now),
        )
        row = await conn.fetchone("SELECT position FROM notify_cursors WHERE name = %s", (name,))
    assert row is not None
    return int(row["position"])


async def advance_notify_cursor(
    conn: Conn,
    name: str,
    seen: int,
    position: int,
    records: list[NotificationRecord],
    now: float,
) -> bool:
    """Move the cursor from `seen` to `position` and store `records`, or do nothing and
    return False when another fan-out moved it first (compare and set)."""
    moved = await conn.execute(
        "UPDATE notify_cursors SET position = %s, updated_at = %s "
        "WHERE name = %s AND position = %s",
        (position, now, name, seen),
    )
    if not moved:
        return False
    await add_notifications(conn, records, now)
    return True


async def add_notifications(conn: Conn, records: list[NotificationRecord], now: float) -> None:
    """Store notifications to send (one per event and channel: a repeat is ignored)."""
    for r in records:
        await conn.execute(
            f"INSERT INTO notifications ({NOTIFICATION_COLUMNS}) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (event_id, channel) DO NOTHING",
            (
                r.id,
                r.tenant,
                r.task_id,
                r.event_id,
                r.trigger,
                r.channel,
                serde.dumps(r.message.to_json()),
                "pending",
                0,
                r.next_at,
                None,
                now,
                None,
            ),
        )


async def claim_notifications(
    conn: Conn, d: Dialect, worker: str, limit: int, now: float, lease_until: float
) -> list[NotificationRecord]:
    """Lease up to `limit` due notifications to `worker` (one more attempt each). A
    lease that expired (its sender vanished) makes the notification due again."""
    rows = await conn.fetchall(
        "SELECT id FROM notifications WHERE status = 'pending' AND next_at <= %s "
        "AND (lease_until IS NULL OR lease_until <= %s) ORDER BY next_at "
        f"LIMIT %s{d.skip_locked}",
        (now, now, limit),
    )
    if not rows:
        return []
    ids = d.list_param([r["id"] for r in rows])
    await conn.execute(
        "UPDATE notifications SET lease_owner = %s, lease_until = %s, attempts = attempts + 1 "
        f"WHERE id {d.any_of}",
        (worker, lease_until, ids),
    )
    found = await conn.fetchall(
        f"SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id {d.any_of} ORDER BY next_at",
        (ids,),
    )
    return [notification_from_row(r) for r in found]


async def settle_notification(
    conn: Conn,
    record: NotificationRecord,
    worker: str,
    status: str,
    error: str | None,
    next_at: float | None,
    now: float,
) -> bool:
    """Record how sending went (`sent`, `failed`, or `pending` again at `next_at`);
    False when `worker` no longer holds that attempt's lease."""
    return (
        await conn.execute(
            "UPDATE notifications SET status = %s, last_error = COALESCE(%s, last_error), "
            "next_at = COALESCE(%s, next_at), sent_at = %s, lease_owner = NULL, "
            "lease_until = NULL WHERE id = %s AND lease_owner = %s AND attempts = %s",
            (
                status,
                error,
                next_at,
                now if status == "sent" else None,
                record.id,
                worker,
                record.attempts,
            ),
        )
        > 0
    )


async def list_notifications(
    conn: Conn, tenant: str | None, task_id: str | None, limit: int
) -> list[NotificationRecord]:
    where, params = ["1 = 1"], []
    if tenant is not None:
        where.append("tenant = %s")
        params.append(tenant)
    if task_id is not None:
        where.append("task_id = %s")
        params.append(task_id)
    rows = await conn.fetchall(
        f"SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE {' AND '.join(where)} "
        "ORDER BY created_at, id LIMIT %s",
        (*params, limit),
    )
    return [notification_from_row(r) for r in rows]
