"""Webhooks: subscriptions, the delivery outbox and its fan-out (claims, outcomes and
replay of deliveries: `tether.store.sql.deliveries`).

The fan-out reads the events feed with `queries.list_events` (the commit-order horizon
of ADR 13 on PostgreSQL) after the stored cursor, and in the same transaction inserts
the deliveries the plan makes and moves the cursor with a compare-and-set: of two
concurrent fan-outs, the second finds the cursor moved and writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tether import serde
from tether.models.webhooks import (
    DeliveryStatus,
    SubscriptionStatus,
    WebhookDelivery,
    WebhookSubscription,
)
from tether.store.outbox import (
    SUMMARY_COLUMNS,
    FanOutResult,
    NewDelivery,
    Plan,
    TaskSummary,
)
from tether.store.sql.core import Conn, Dialect, Row
from tether.store.sql.queries import list_events

SUB_COLUMNS = (
    "id, tenant, url, event_types, workflows, task_id, description, status, secret, "
    "previous_secret, previous_secret_until, disabled_reason, disabled_at, "
    "consecutive_failures, created_at, updated_at, created_by"
)
DELIVERY_INSERT = (
    "id, subscription_id, tenant, event_id, task_id, event_type, webhook_id, body, "
    "status, attempts, next_attempt_at, created_at, updated_at"
)
DELIVERY_COLUMNS = (
    "id, subscription_id, tenant, event_id, task_id, event_type, webhook_id, status, "
    "attempts, next_attempt_at, created_at, updated_at, last_status_code, last_error, "
    "delivered_at, lease_owner, lease_expires_at"
)
OPEN = "('pending', 'delivering')"
# Per-task order: a delivery waits while an older one of its (subscription, task) is open.
NO_OLDER_OPEN = (
    "NOT EXISTS (SELECT 1 FROM webhook_deliveries o WHERE o.subscription_id = d.subscription_id "
    f"AND o.task_id = d.task_id AND o.event_id < d.event_id AND o.status IN {OPEN})"
)
_UPDATABLE = frozenset(
    {
        "url",
        "event_types",
        "workflows",
        "description",
        "status",
        "secret",
        "previous_secret",
        "previous_secret_until",
        "disabled_reason",
    }
)


def sub_from_row(row: Row) -> WebhookSubscription:
    return WebhookSubscription(
        id=row["id"],
        tenant=row["tenant"],
        url=row["url"],
        event_types=list(serde.loads(row["event_types"])),
        secret=row["secret"],
        workflows=serde.loads(row["workflows"]) if row["workflows"] is not None else None,
        task_id=row["task_id"],
        description=row["description"],
        status=SubscriptionStatus(row["status"]),
        previous_secret=row["previous_secret"],
        previous_secret_until=row["previous_secret_until"],
        disabled_reason=row["disabled_reason"],
        disabled_at=row["disabled_at"],
        consecutive_failures=row["consecutive_failures"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        created_by=row["created_by"],
    )


def delivery_from_row(row: Row) -> WebhookDelivery:
    return WebhookDelivery(
        id=row["id"],
        subscription_id=row["subscription_id"],
        tenant=row["tenant"],
        event_id=int(row["event_id"]),
        task_id=row["task_id"],
        event_type=row["event_type"],
        webhook_id=row["webhook_id"],
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        body=row["body"] if "body" in row.keys() else "",  # noqa: SIM118 (sqlite3.Row)
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        delivered_at=row["delivered_at"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
    )


# subscriptions -------------------------------------------------------------------------


def _sub_params(sub: WebhookSubscription) -> tuple[Any, ...]:
    return (
        sub.id,
        sub.tenant,
        sub.url,
        serde.dumps(sub.event_types),
        serde.dumps(sub.workflows) if sub.workflows is not None else None,
        sub.task_id,
        sub.description,
        str(sub.status),
        sub.secret,
        sub.previous_secret,
        sub.previous_secret_until,
        sub.disabled_reason,
        sub.disabled_at,
        sub.consecutive_failures,
        sub.created_at,
        sub.updated_at,
        sub.created_by,
    )


async def create_subscription(conn: Conn, sub: WebhookSubscription) -> None:
    marks = ", ".join(["%s"] * 17)
    await conn.execute(
        f"INSERT INTO webhook_subscriptions ({SUB_COLUMNS}) VALUES ({marks})", _sub_params(sub)
    )


async def get_subscription(
    conn: Conn, subscription_id: str, tenant: str | None
) -> WebhookSubscription | None:
    row = await conn.fetchone(
        f"SELECT {SUB_COLUMNS} FROM webhook_subscriptions WHERE id = %s", (subscription_id,)
    )
    if row is None or (tenant is not None and row["tenant"] != tenant):
        return None
    return sub_from_row(row)


async def task_subscription(conn: Conn, task_id: str) -> WebhookSubscription | None:
    """The oldest subscription of one task (its `callback_url`), or None."""
    row = await conn.fetchone(
        f"SELECT {SUB_COLUMNS} FROM webhook_subscriptions WHERE task_id = %s ORDER BY id LIMIT 1",
        (task_id,),
    )
    return sub_from_row(row) if row is not None else None


async def list_subscriptions(
    conn: Conn, tenant: str, task_id: str | None, before_id: str | None, limit: int
) -> list[WebhookSubscription]:
    where, params = ["tenant = %s"], [tenant]
    if task_id is not None:
        where.append("task_id = %s")
        params.append(task_id)
    if before_id is not None:
        where.append("id < %s")
        params.append(before_id)
    rows = await conn.fetchall(
        f"SELECT {SUB_COLUMNS} FROM webhook_subscriptions WHERE {' AND '.join(where)} "
        "ORDER BY id DESC LIMIT %s",
        (*params, limit),
    )
    return [sub_from_row(r) for r in rows]


async def fail_pending(conn: Conn, subscription_id: str, reason: str, now: float) -> None:
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'failed', last_error = %s, updated_at = %s "
        "WHERE subscription_id = %s AND status = 'pending'",
        (f"subscription disabled: {reason}", now, subscription_id),
    )


async def update_subscription(
    conn: Conn, subscription_id: str, tenant: str | None, changes: dict[str, Any], now: float
) -> WebhookSubscription | None:
    current = await get_subscription(conn, subscription_id, tenant)
    if current is None:
        return None
    unknown = set(changes) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {', '.join(sorted(unknown))}")
    values = dict(changes)
    status = values.get("status")
    if status == SubscriptionStatus.DISABLED and current.status != status:
        values.setdefault("disabled_reason", "disabled by an operator")
        values["disabled_at"] = now
        await fail_pending(conn, subscription_id, str(values["disabled_reason"]), now)
    elif status == SubscriptionStatus.ACTIVE and current.status != status:
        values.update(disabled_reason=None, disabled_at=None, consecutive_failures=0)
    for name in ("event_types", "workflows"):
        if name in values and values[name] is not None:
            values[name] = serde.dumps(values[name])
    if "status" in values:
        values["status"] = str(values["status"])
    values["updated_at"] = now
    sets = ", ".join(f"{name} = %s" for name in values)
    await conn.execute(
        f"UPDATE webhook_subscriptions SET {sets} WHERE id = %s",
        (*values.values(), subscription_id),
    )
    return await get_subscription(conn, subscription_id, None)


async def delete_subscription(conn: Conn, subscription_id: str, tenant: str | None) -> bool:
    if await get_subscription(conn, subscription_id, tenant) is None:
        return False
    await conn.execute(
        "DELETE FROM webhook_deliveries WHERE subscription_id = %s", (subscription_id,)
    )
    await conn.execute("DELETE FROM webhook_subscriptions WHERE id = %s", (subscription_id,))
    return True


# fan-out -------------------------------------------------------------------------------


async def summaries(conn: Conn, d: Dialect, task_ids: Sequence[str]) -> dict[str, TaskSummary]:
    found: dict[str, TaskSummary] = {}
    columns = ", ".join(SUMMARY_COLUMNS)
    for start in range(0, len(task_ids), 500):
        chunk = d.list_param(list(task_ids[start : start + 500]))
        for row in await conn.fetchall(
            f"SELECT {columns} FROM tasks WHERE id {d.any_of}", (chunk,)
        ):
            found[row["id"]] = {name: row[name] for name in SUMMARY_COLUMNS}
    return found


async def _active_for(
    conn: Conn, d: Dialect, tenants: Sequence[str], task_ids: Sequence[str]
) -> list[WebhookSubscription]:
    """The active subscriptions that may select events of these tenants and tasks."""
    subs = [
        sub_from_row(r)
        for r in await conn.fetchall(
            f"SELECT {SUB_COLUMNS} FROM webhook_subscriptions WHERE status = 'active' "
            f"AND task_id IS NULL AND tenant {d.any_of}",
            (d.list_param(list(tenants)),),
        )
    ]
    for start in range(0, len(task_ids), 500):
        chunk = d.list_param(list(task_ids[start : start + 500]))
        subs += [
            sub_from_row(r)
            for r in await conn.fetchall(
                f"SELECT {SUB_COLUMNS} FROM webhook_subscriptions WHERE status = 'active' "
                f"AND task_id {d.any_of}",
                (chunk,),
            )
        ]
    return subs


def delivery_rows(new: Sequence[NewDelivery], now: float) -> list[tuple[Any, ...]]:
    return [
        (
            n.id,
            n.subscription_id,
            n.tenant,
            n.event_id,
            n.task_id,
            n.event_type,
            n.webhook_id,
            n.body,
            "pending",
            0,
            now,
            now,
            now,
        )
        for n in new
    ]


async def fan_out(conn: Conn, d: Dialect, plan: Plan, limit: int, now: float) -> FanOutResult:
    row = await conn.fetchone("SELECT after FROM webhook_cursor WHERE name = 'fanout'")
    after = int(row["after"]) if row is not None else 0
    if row is None:
        await conn.execute("INSERT INTO webhook_cursor (name, after) VALUES ('fanout', 0)")
    any_active = await conn.fetchone(
        "SELECT id FROM webhook_subscriptions WHERE status = 'active' LIMIT 1"
    )
    if any_active is None:
        # Nobody subscribes: skip to the newest visible event without reading the rest.
        newest = await conn.fetchone(
            f"SELECT id FROM events WHERE id > %s{d.committed_events} ORDER BY id DESC LIMIT 1",
            (after,),
        )
        if newest is None:
            return FanOutResult(0, 0, after, subscribed=False)
        moved = await _advance(conn, after, int(newest["id"]))
        return FanOutResult(0, 0, int(newest["id"]) if moved else after, subscribed=False)
    events = await list_events(conn, d, None, None, after, limit)
    if not events:
        return FanOutResult(0, 0, after)
    subs = await _active_for(
        conn, d, sorted({e.tenant for e in events}), sorted({e.task_id for e in events})
    )
    tenants = {s.tenant for s in subs if s.task_id is None}
    own = {s.task_id for s in subs if s.task_id is not None}
    wanted = sorted({e.task_id for e in events if e.tenant in tenants or e.task_id in own})
    tasks = await summaries(conn, d, wanted) if wanted else {}
    new = plan(events, tasks, subs, now) if wanted else []
    last = events[-1].id
    if not await _advance(conn, after, last):
        return FanOutResult(0, 0, after)  # another fan-out took this page
    if new:
        await conn.insert_rows("webhook_deliveries", DELIVERY_INSERT, delivery_rows(new, now))
    return FanOutResult(len(events), len(new), last)


async def _advance(conn: Conn, after: int, to: int) -> bool:
    moved = await conn.execute(
        "UPDATE webhook_cursor SET after = %s WHERE name = 'fanout' AND after = %s", (to, after)
    )
    return moved > 0
