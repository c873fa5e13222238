"""Inbound signed webhooks: what a delivery does (start a task or signal one) happens in
the same transaction as its receipt, so a redelivery of the same webhook-id finds the
receipt and acts no second time."""

from __future__ import annotations

from tether.models import HookReceipt
from tether.store.base import InboundHook, Submitted
from tether.store.sql.control import send_signal
from tether.store.sql.core import Conn, Dialect
from tether.store.sql.intake import submit


async def receive_hook(
    conn: Conn, d: Dialect, hook: InboundHook, now: float
) -> tuple[HookReceipt, Submitted | None]:
    """Act on `hook` unless its (hook, webhook-id) has a live receipt; return the receipt
    (`replayed` when it was there already) and, when a task was started, the submission."""
    # Receipts past their window are forgotten here (the index makes this cheap when
    # none are), so the same id may act again after `ttl`.
    await conn.execute("DELETE FROM hook_receipts WHERE expires_at <= %s", (now,))
    task_id = hook.start.id if hook.start is not None else hook.signal_task
    assert task_id is not None, "an inbound hook starts a task or signals one"
    action = "started" if hook.start is not None else "signalled"
    # On PostgreSQL a concurrent redelivery's INSERT waits for this one, then conflicts.
    fresh = await conn.fetchone(
        "INSERT INTO hook_receipts (hook, webhook_id, tenant, action, task_id, signal_id, "
        "received_at, expires_at) VALUES (%s, %s, %s, %s, %s, NULL, %s, %s) "
        "ON CONFLICT (hook, webhook_id) DO NOTHING RETURNING hook",
        (hook.hook, hook.webhook_id, hook.tenant, action, task_id, now, now + hook.ttl),
    )
    if fresh is None:
        row = await conn.fetchone(
            "SELECT tenant, action, task_id, signal_id, received_at FROM hook_receipts "
            "WHERE hook = %s AND webhook_id = %s",
            (hook.hook, hook.webhook_id),
        )
        assert row is not None
        receipt = HookReceipt(
            hook.hook,
            hook.webhook_id,
            row["tenant"],
            row["action"],
            row["task_id"],
            row["signal_id"],
            row["received_at"],
            replayed=True,
        )
        return receipt, None
    submitted: Submitted | None = None
    signal_id: int | None = None
    if hook.start is not None:
        (submitted,) = await submit(conn, d, [hook.start], now)
        task_id = submitted.task.id
    else:
        assert hook.signal_name is not None
        sig = await send_signal(
            conn, d, task_id, hook.tenant, hook.signal_name, hook.signal_payload, now
        )
        signal_id = sig.id
        await conn.execute(
            "UPDATE hook_receipts SET signal_id = %s WHERE hook = %s AND webhook_id = %s",
            (signal_id, hook.hook, hook.webhook_id),
        )
    receipt = HookReceipt(hook.hook, hook.webhook_id, hook.tenant, action, task_id, signal_id, now)
    return receipt, submitted
