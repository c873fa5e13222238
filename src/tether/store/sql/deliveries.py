"""Webhook deliveries: leased claims in per-task order, their outcomes (retries,
disabling), and replay. Subscriptions, row mappers and the fan-out that creates the
deliveries are in `tether.store.sql.webhooks`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tether.errors import DeliveryInFlight, WebhookDisabled
from tether.models.webhooks import (
    DeliveryFilter,
    DeliveryStatus,
    Replayed,
    SubscriptionStatus,
    WebhookDelivery,
    WebhookSubscription,
)
from tether.store.outbox import (
    ClaimedDelivery,
    DeliveryOutcome,
    Plan,
)
from tether.store.sql.core import Conn, Dialect, event_from_row
from tether.store.sql.events import EVENT_COLUMNS
from tether.store.sql.webhooks import (
    DELIVERY_COLUMNS,
    DELIVERY_INSERT,
    NO_OLDER_OPEN,
    SUB_COLUMNS,
    delivery_from_row,
    delivery_rows,
    fail_pending,
    get_subscription,
    sub_from_row,
    summaries,
)

# claims and outcomes -------------------------------------------------------------------


async def claim_deliveries(
    conn: Conn, d: Dialect, owner: str, limit: int, now: float, lease_until: float
) -> list[ClaimedDelivery]:
    picked = await conn.fetchall(
        "SELECT d.id FROM webhook_deliveries d WHERE d.status = 'pending' AND "
        f"d.next_attempt_at <= %s AND {NO_OLDER_OPEN} ORDER BY d.next_attempt_at "
        f"LIMIT %s{d.skip_locked}",
        (now, limit),
    )
    if len(picked) < limit:
        picked += await conn.fetchall(
            "SELECT d.id FROM webhook_deliveries d WHERE d.status = 'delivering' AND "
            f"d.lease_expires_at < %s AND {NO_OLDER_OPEN} ORDER BY d.lease_expires_at "
            f"LIMIT %s{d.skip_locked}",
            (now, limit - len(picked)),
        )
    if not picked:
        return []
    rows = await conn.fetchall(
        "UPDATE webhook_deliveries SET status = 'delivering', attempts = attempts + 1, "
        "lease_owner = %s, lease_expires_at = %s, updated_at = %s "
        f"WHERE id {d.any_of} RETURNING {DELIVERY_COLUMNS}, body",
        (owner, lease_until, now, d.list_param([r["id"] for r in picked])),
    )
    deliveries = [delivery_from_row(r) for r in rows]
    sub_ids = sorted({x.subscription_id for x in deliveries})
    subs = {
        r["id"]: sub_from_row(r)
        for r in await conn.fetchall(
            f"SELECT {SUB_COLUMNS} FROM webhook_subscriptions WHERE id {d.any_of}",
            (d.list_param(sub_ids),),
        )
    }
    out = []
    for x in sorted(deliveries, key=lambda x: x.event_id):
        sub = subs.get(x.subscription_id)
        if sub is not None:
            out.append(ClaimedDelivery(x, sub.url, sub.signing_secrets(now)))
    return out


async def disable(
    conn: Conn, subscription_id: str, reason: str, now: float
) -> WebhookSubscription | None:
    """Disable an active subscription and fail its pending deliveries; None when it was
    not active."""
    changed = await conn.execute(
        "UPDATE webhook_subscriptions SET status = 'disabled', disabled_reason = %s, "
        "disabled_at = %s, updated_at = %s WHERE id = %s AND status = 'active'",
        (reason, now, now, subscription_id),
    )
    if not changed:
        return None
    await fail_pending(conn, subscription_id, reason, now)
    return await get_subscription(conn, subscription_id, None)


async def record_deliveries(
    conn: Conn,
    d: Dialect,
    owner: str,
    outcomes: Sequence[DeliveryOutcome],
    now: float,
    disable_after: int,
) -> list[WebhookSubscription]:
    disabled: list[WebhookSubscription] = []
    by_code: dict[int | None, list[str]] = {}
    for o in outcomes:
        if o.delivered:
            by_code.setdefault(o.status_code, []).append(o.delivery_id)
    succeeded: set[str] = set()
    for code, ids in by_code.items():
        rows = await conn.fetchall(
            "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = %s, "
            "updated_at = %s, last_status_code = %s, last_error = NULL, lease_owner = NULL, "
            f"lease_expires_at = NULL WHERE id {d.any_of} AND lease_owner = %s AND "
            "status = 'delivering' RETURNING subscription_id",
            (now, now, code, d.list_param(ids), owner),
        )
        succeeded.update(r["subscription_id"] for r in rows)
    if succeeded:
        await conn.execute(
            "UPDATE webhook_subscriptions SET consecutive_failures = 0 "
            f"WHERE id {d.any_of} AND consecutive_failures > 0",
            (d.list_param(sorted(succeeded)),),
        )
    for o in outcomes:
        if o.delivered:
            continue
        final = o.retry_at is None or o.gone
        applied = await conn.execute(
            "UPDATE webhook_deliveries SET status = %s, next_attempt_at = %s, updated_at = %s, "
            "last_status_code = %s, last_error = %s, lease_owner = NULL, "
            "lease_expires_at = NULL WHERE id = %s AND lease_owner = %s AND attempts = %s "
            "AND status = 'delivering'",
            (
                "failed" if final else "pending",
                now if final else o.retry_at,
                now,
                o.status_code,
                (o.error or "")[:500] or None,
                o.delivery_id,
                owner,
                o.attempts,
            ),
        )
        if not applied:
            continue
        if not final:
            # Later events of the task wait behind this one: move them out of the way of
            # claims until it is due again.
            await conn.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = %s WHERE subscription_id = %s "
                "AND task_id = %s AND event_id > %s AND status = 'pending' "
                "AND next_attempt_at < %s",
                (o.retry_at, o.subscription_id, o.task_id, o.event_id, o.retry_at),
            )
            continue
        if o.gone:
            gone = await disable(conn, o.subscription_id, "the receiver answered 410 Gone", now)
            disabled += [gone] if gone else []
            continue
        row = await conn.fetchone(
            "UPDATE webhook_subscriptions SET consecutive_failures = consecutive_failures + 1 "
            "WHERE id = %s RETURNING consecutive_failures",
            (o.subscription_id,),
        )
        if row is not None and int(row["consecutive_failures"]) >= disable_after:
            reason = f"{row['consecutive_failures']} deliveries in a row failed for good"
            off = await disable(conn, o.subscription_id, reason, now)
            disabled += [off] if off else []
    return disabled


# replay --------------------------------------------------------------------------------


async def list_deliveries(conn: Conn, d: Dialect, flt: DeliveryFilter) -> list[WebhookDelivery]:
    where, params = ["tenant = %s"], [flt.tenant]
    if flt.subscription_id is not None:
        where.append("subscription_id = %s")
        params.append(flt.subscription_id)
    if flt.task_id is not None:
        where.append("task_id = %s")
        params.append(flt.task_id)
    if flt.status:
        where.append(f"status {d.any_of}")
        params.append(d.list_param([str(s) for s in flt.status]))
    if flt.before_id is not None:
        where.append("id < %s")
        params.append(flt.before_id)
    rows = await conn.fetchall(
        f"SELECT {DELIVERY_COLUMNS}, body FROM webhook_deliveries WHERE {' AND '.join(where)} "
        "ORDER BY id DESC LIMIT %s",
        (*params, flt.limit),
    )
    return [delivery_from_row(r) for r in rows]


async def get_delivery(conn: Conn, delivery_id: str, tenant: str | None) -> WebhookDelivery | None:
    row = await conn.fetchone(
        f"SELECT {DELIVERY_COLUMNS}, body FROM webhook_deliveries WHERE id = %s", (delivery_id,)
    )
    if row is None or (tenant is not None and row["tenant"] != tenant):
        return None
    return delivery_from_row(row)


async def retry_delivery(
    conn: Conn, delivery_id: str, tenant: str | None, now: float
) -> WebhookDelivery | None:
    found = await get_delivery(conn, delivery_id, tenant)
    if found is None:
        return None
    if found.status == DeliveryStatus.DELIVERING:
        raise DeliveryInFlight(f"delivery {delivery_id} is being delivered right now")
    sub = await get_subscription(conn, found.subscription_id, None)
    if sub is None or sub.status != SubscriptionStatus.ACTIVE:
        raise WebhookDisabled("the subscription is disabled: enable it first")
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = %s, "
        "updated_at = %s WHERE id = %s",
        (now, now, delivery_id),
    )
    return await get_delivery(conn, delivery_id, None)


async def replay(
    conn: Conn,
    d: Dialect,
    subscription_id: str,
    tenant: str | None,
    plan: Plan,
    *,
    after_event: int,
    since: float | None,
    limit: int,
    now: float,
) -> Replayed | None:
    sub = await get_subscription(conn, subscription_id, tenant)
    if sub is None:
        return None
    if sub.status != SubscriptionStatus.ACTIVE:
        raise WebhookDisabled("the subscription is disabled: enable it first")
    # Only what the fan-out has passed: later events are its to deliver.
    row = await conn.fetchone("SELECT after FROM webhook_cursor WHERE name = 'fanout'")
    horizon = int(row["after"]) if row is not None else 0
    where = ["tenant = %s", "id > %s", "id <= %s"]
    params: list[Any] = [sub.tenant, after_event, horizon]
    if sub.task_id is not None:
        where.append("task_id = %s")
        params.append(sub.task_id)
    if since is not None:
        where.append("at >= %s")
        params.append(since)
    events = [
        event_from_row(r)
        for r in await conn.fetchall(
            f"SELECT id, {EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} "
            "ORDER BY id LIMIT %s",
            (*params, limit),
        )
    ]
    if not events:
        return Replayed(0, 0, after_event, False)
    tasks = await summaries(conn, d, sorted({e.task_id for e in events}))
    new = plan(events, tasks, [sub], now)
    if not new:
        return Replayed(0, 0, events[-1].id, len(events) == limit)
    existing = {
        int(r["event_id"])
        for r in await conn.fetchall(
            "SELECT event_id FROM webhook_deliveries WHERE subscription_id = %s "
            f"AND event_id {d.any_of}",
            (subscription_id, d.list_param([n.event_id for n in new])),
        )
    }
    reset = 0
    if existing:
        reset = await conn.execute(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, "
            "next_attempt_at = %s, updated_at = %s WHERE subscription_id = %s "
            f"AND event_id {d.any_of} AND status IN ('delivered', 'failed')",
            (now, now, subscription_id, d.list_param(sorted(existing))),
        )
    missing = [n for n in new if n.event_id not in existing]
    marks = ", ".join(["%s"] * 13)
    for values in delivery_rows(missing, now):
        await conn.execute(
            f"INSERT INTO webhook_deliveries ({DELIVERY_INSERT}) VALUES ({marks}) "
            "ON CONFLICT (subscription_id, event_id) DO NOTHING",
            values,
        )
    return Replayed(reset, len(missing), events[-1].id, len(events) == limit)
