"""The notification outbox and inbound-webhook receipts, on both backends: the fan-out
cursor is compare-and-set, a notification is stored once per event and channel, a
sender that vanished mid-send loses nothing (its lease expires and another sends), and a
receipt makes a webhook-id act once within its window."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from helpers import all_events
from tether import Context, Tether
from tether.errors import TaskNotFound
from tether.ids import new_id
from tether.models import Notification, NotificationRecord
from tether.store.base import InboundHook


def _record(event_id: int | None, channel: str, at: float) -> NotificationRecord:
    return NotificationRecord(
        id=new_id(),
        tenant="t1",
        channel=channel,
        trigger="task.failed",
        message=Notification("it failed", subject="failed"),
        event_id=event_id,
        next_at=at,
        created_at=at,
    )


async def _app_with_a_task(make_app: Callable[[], Tether]) -> tuple[Tether, str]:
    app = make_app()

    @app.workflow("w")
    async def w(ctx: Context) -> None:
        return None

    handle = await app.submit("w", tenant="t1")
    return app, handle.id


async def test_the_cursor_starts_at_the_head_and_moves_by_compare_and_set(
    make_app: Callable[[], Tether],
) -> None:
    app, task_id = await _app_with_a_task(make_app)
    store, now = app.store, app.clock.now()
    # Past the PostgreSQL feed's horizon (ADR 13), or the cursor could start further on.
    head = max(e.id for e in await all_events(store, task_id))
    assert await store.notify_position("n", now) == head  # history is not announced
    assert await store.notify_position("n", now) == head
    first = [_record(head, "ops", now), _record(head, "team", now)]
    assert await store.advance_notify_cursor("n", head, head + 5, first, now)
    # A second fan-out that read from the same position lost the race: nothing stored.
    late = [_record(head, "ops", now), _record(head, "other", now)]
    assert not await store.advance_notify_cursor("n", head, head + 5, late, now)
    assert await store.notify_position("n", now) == head + 5
    # The same event and channel twice is one notification.
    assert await store.advance_notify_cursor("n", head + 5, head + 6, late, now)
    stored = await store.list_notifications()
    assert sorted(r.channel for r in stored) == ["ops", "other", "team"]


async def test_a_lease_that_expires_hands_the_notification_to_another_sender(
    make_app: Callable[[], Tether],
) -> None:
    app, _ = await _app_with_a_task(make_app)
    store, now = app.store, app.clock.now()
    position = await store.notify_position("n", now)
    await store.advance_notify_cursor("n", position, position, [_record(None, "ops", now)], now)
    (mine,) = await store.claim_notifications("a", 10, now, now + 30)
    assert mine.attempts == 1
    assert await store.claim_notifications("b", 10, now + 1, now + 31) == []  # leased
    # Sender a vanished mid-send: after its lease, b takes the notification over...
    (taken,) = await store.claim_notifications("b", 10, now + 31, now + 61)
    assert taken.id == mine.id and taken.attempts == 2
    # ...and a's late outcome is fenced off; b's stands.
    assert not await store.settle_notification(mine, "a", "sent", None, None, now + 32)
    assert await store.settle_notification(
        taken, "b", "pending", "Transient: x", now + 40, now + 32
    )
    assert await store.claim_notifications("b", 10, now + 39, now + 69) == []  # backoff
    (retry,) = await store.claim_notifications("b", 10, now + 40, now + 70)
    assert await store.settle_notification(retry, "b", "sent", None, None, now + 41)
    (done,) = await store.list_notifications()
    assert (done.status, done.attempts, done.last_error) == ("sent", 3, "Transient: x")
    assert await store.claim_notifications("c", 10, now + 1000, now + 1030) == []


async def test_a_webhook_id_acts_once_within_its_window(make_app: Callable[[], Tether]) -> None:
    app, task_id = await _app_with_a_task(make_app)
    store, now = app.store, app.clock.now()

    def start() -> InboundHook:
        return InboundHook("h", "msg_1", "t1", ttl=60, start=app.new_task("w", None, tenant="t1"))

    first = await store.receive_hook(start(), now)
    assert first.action == "started" and not first.replayed
    # Concurrent redeliveries: one receipt, one task.
    again = await asyncio.gather(*(store.receive_hook(start(), now + 1) for _ in range(5)))
    assert {(r.task_id, r.replayed) for r in again} == {(first.task_id, True)}
    assert await store.get_task(first.task_id) is not None
    tasks = await app.list_tasks()
    assert len(tasks) == 2  # the one of the fixture and the hook's
    # After the window the id is forgotten, and acts again.
    later = await store.receive_hook(start(), now + 61)
    assert not later.replayed and later.task_id != first.task_id

    signal = InboundHook(
        "h", "msg_2", "t1", ttl=60, signal_task=task_id, signal_name="go", signal_payload="1"
    )
    sent = await store.receive_hook(signal, now)
    assert sent.action == "signalled" and sent.signal_id is not None
    assert (await store.receive_hook(signal, now)).signal_id == sent.signal_id
    # Another tenant's task is not found, and nothing is remembered for that id.
    foreign = InboundHook(
        "h", "msg_3", "t2", ttl=60, signal_task=task_id, signal_name="go", signal_payload="1"
    )
    with pytest.raises(TaskNotFound):
        await store.receive_hook(foreign, now)
    with pytest.raises(TaskNotFound):
        await store.receive_hook(foreign, now)
