"""The webhook outbox in the store, on both backends: the fan-out over the events feed,
claims with leases in per-task order, outcomes (retry, give up, 410, disabling),
replay and retry, tenancy, callbacks made with their task, and purge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tether import Context, InvalidTransition, Tether, TetherError
from tether.models.webhooks import (
    DeliveryFilter,
    DeliveryStatus,
    SubscriptionStatus,
    WebhookDelivery,
)
from tether.services import webhooks
from tether.store.outbox import ClaimedDelivery, DeliveryOutcome
from tether.webhooks import fanout

URL = "https://hooks.example.com/in"  # stored only: nothing here sends


def _app(make_app: Callable[[], Tether]) -> Tether:
    app = make_app()

    @app.workflow("wf")
    async def wf(ctx: Context, x: int = 0) -> int:
        return x

    @app.workflow("other")
    async def other(ctx: Context) -> None:
        return None

    return app


async def _subscribe(app: Tether, types: list[str], tenant: str = "default", **kw: Any) -> Any:
    # A public name that the egress guard accepts without DNS: an IP literal.
    kw.setdefault("url", "https://93.184.216.34/in")
    return await webhooks.create(app, tenant, kw.pop("url"), types, **kw)


async def _newest_event(app: Tether) -> int:
    async def read(conn: Any) -> int:
        row = await conn.fetchone("SELECT MAX(id) AS m FROM events")
        return int(row["m"] or 0)

    return await app.store._run(read, write=False)  # type: ignore[attr-defined]


async def _fan_out_all(app: Tether) -> int:
    """Fan out until the cursor passed every event written so far (on PostgreSQL an
    event can be held back while older transactions are open: ADR 13)."""
    target = await _newest_event(app)
    total = 0
    for _ in range(400):
        result = await app.store.fan_out(fanout.plan, 1000, app.clock.now())
        total += result.deliveries
        if result.cursor >= target:
            return total
        await asyncio.sleep(0.025)
    raise AssertionError("the fan-out did not reach the newest event")


async def _all(app: Tether, tenant: str = "default", **kw: Any) -> list[WebhookDelivery]:
    return await app.store.list_deliveries(DeliveryFilter(tenant=tenant, limit=1000, **kw))


async def _claim(app: Tether, owner: str = "d1", now: float | None = None) -> list[ClaimedDelivery]:
    now = app.clock.now() if now is None else now
    return await app.store.claim_deliveries(owner, 100, now, now + 30)


def _outcome(c: ClaimedDelivery, **kw: Any) -> DeliveryOutcome:
    d = c.delivery
    values: dict[str, Any] = {"delivered": True, "status_code": 200}
    values.update(kw)
    return DeliveryOutcome(d.id, d.subscription_id, d.task_id, d.event_id, d.attempts, **values)


async def test_fan_out_makes_one_delivery_per_matching_event_and_moves_on(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    before = await app.submit("wf", 1)  # before any subscription: never fanned out
    await _fan_out_all(app)
    everything = await _subscribe(app, ["*"])
    ends = await _subscribe(app, ["task.succeeded", "task.created"], workflows=["other"])
    a = await app.submit("wf", 2)
    b = await app.submit("other")
    assert await _fan_out_all(app) == 3  # two task.created for '*', one for `ends`
    assert await _fan_out_all(app) == 0
    got = {(d.subscription_id, d.task_id, d.event_type) for d in await _all(app)}
    assert got == {
        (everything.id, a.id, "task.created"),
        (everything.id, b.id, "task.created"),
        (ends.id, b.id, "task.created"),
    }
    assert before.id not in {d.task_id for d in await _all(app)}
    assert all(d.status == DeliveryStatus.PENDING for d in await _all(app))


async def test_concurrent_fan_outs_never_make_a_delivery_twice(
    make_app: Callable[[], Tether],
) -> None:
    first, second = _app(make_app), _app(make_app)  # two stores: two "processes"
    await first.open()
    await second.open()
    await _subscribe(first, ["*"])
    await first.submit_many("wf", list(range(50)))

    async def race(app: Tether) -> None:
        for _ in range(5):
            await app.store.fan_out(fanout.plan, 7, app.clock.now())

    await asyncio.gather(*(race(app) for app in (first, second, first, second)))
    await _fan_out_all(first)
    found = await _all(first)
    assert len(found) == 50
    assert len({d.event_id for d in found}) == 50


async def test_a_tasks_deliveries_are_claimed_one_at_a_time_in_event_order(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    await _subscribe(app, ["*"])
    async with app.worker(webhooks=False):
        handle = await app.submit("wf", 3)
        await handle.result(timeout=10)
    await _fan_out_all(app)
    order = sorted(await _all(app, task_id=handle.id), key=lambda d: d.event_id)
    assert [d.event_type for d in order] == ["task.created", "task.started", "task.succeeded"]
    seen = []
    for _ in order:
        (one,) = await _claim(app)
        seen.append(one.delivery.event_id)
        assert await _claim(app, "d2") == []  # the next one waits for this one
        await app.store.record_deliveries("d1", [_outcome(one)], app.clock.now(), 5)
    assert seen == [d.event_id for d in order]
    assert all(d.status == DeliveryStatus.DELIVERED for d in await _all(app))


async def test_an_expired_lease_is_claimed_again_with_the_same_webhook_id(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    await _subscribe(app, ["task.created"])
    await app.submit("wf", 0)
    await _fan_out_all(app)
    now = app.clock.now()
    (first,) = await app.store.claim_deliveries("dead", 10, now, now + 1)
    assert await app.store.claim_deliveries("alive", 10, now + 0.5, now + 30) == []
    (again,) = await app.store.claim_deliveries("alive", 10, now + 2, now + 30)
    assert again.delivery.id == first.delivery.id
    assert again.delivery.webhook_id == first.delivery.webhook_id
    assert again.delivery.attempts == first.delivery.attempts + 1
    # The dead dispatcher's late outcome is fenced off; the live one's stands.
    await app.store.record_deliveries("dead", [_outcome(first)], now + 3, 5)
    assert (await _all(app))[0].status == DeliveryStatus.DELIVERING
    await app.store.record_deliveries("alive", [_outcome(again)], now + 3, 5)
    assert (await _all(app))[0].status == DeliveryStatus.DELIVERED


async def test_a_failed_attempt_is_retried_later_and_holds_back_the_tasks_next_events(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    await _subscribe(app, ["*"])
    async with app.worker(webhooks=False):
        await (await app.submit("wf", 0)).result(timeout=10)
    await _fan_out_all(app)
    now = app.clock.now()
    (first,) = await _claim(app, now=now)
    failed = _outcome(first, delivered=False, status_code=500, error="HTTP 500", retry_at=now + 60)
    await app.store.record_deliveries("d1", [failed], now, 5)
    assert await _claim(app, now=now + 30) == []  # neither it nor the task's later ones
    (retried,) = await _claim(app, now=now + 61)
    assert retried.delivery.id == first.delivery.id and retried.delivery.attempts == 2
    stored = await app.store.get_delivery(first.delivery.id, "default")
    assert stored is not None and stored.last_status_code == 500


async def test_deliveries_failed_for_good_disable_the_subscription_after_n(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    sub = await _subscribe(app, ["task.created"])
    await app.submit_many("wf", [1, 2, 3])
    await _fan_out_all(app)
    claimed = await _claim(app)
    assert len(claimed) == 3
    give_up = [_outcome(c, delivered=False, error="timed out") for c in claimed[:2]]
    disabled = await app.store.record_deliveries("d1", give_up, app.clock.now(), 2)
    assert [s.id for s in disabled] == [sub.id]
    now_sub = await app.store.get_subscription(sub.id, "default")
    assert now_sub is not None and now_sub.status == SubscriptionStatus.DISABLED
    assert now_sub.disabled_reason == "2 deliveries in a row failed for good"
    # Enabling clears the count; a success resets it too.
    enabled = await webhooks.update(app, sub.id, "default", enabled=True)
    assert enabled is not None and enabled.consecutive_failures == 0


async def test_410_gone_disables_the_subscription_and_fails_its_pending_deliveries(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    sub = await _subscribe(app, ["task.created"])
    await app.submit_many("wf", [1, 2])
    await _fan_out_all(app)
    now = app.clock.now()
    one = (await app.store.claim_deliveries("d1", 1, now, now + 30))[0]
    gone = _outcome(one, delivered=False, status_code=410, error="HTTP 410", gone=True)
    disabled = await app.store.record_deliveries("d1", [gone], now, 5)
    assert [s.disabled_reason for s in disabled] == ["the receiver answered 410 Gone"]
    statuses = sorted(str(d.status) for d in await _all(app))
    assert statuses == ["failed", "failed"]
    assert await _claim(app) == []
    with pytest.raises(InvalidTransition):
        await webhooks.retry(app, one.delivery.id, "default")
    assert (await app.store.get_subscription(sub.id, None)).status == "disabled"  # type: ignore[union-attr]


async def test_replay_sends_again_with_the_same_ids_and_makes_missing_deliveries(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    start = app.clock.now()
    early = await app.submit("wf", 1)  # before the subscription: no delivery
    await _fan_out_all(app)
    sub = await _subscribe(app, ["task.created"])
    late = await app.submit("wf", 2)
    await _fan_out_all(app)
    (claimed,) = await _claim(app)
    await app.store.record_deliveries("d1", [_outcome(claimed)], app.clock.now(), 5)
    done = await webhooks.replay(app, sub.id, "default", since=start - 1)
    assert done is not None and (done.reset, done.created, done.more) == (1, 1, False)
    found = {d.task_id: d for d in await _all(app)}
    assert set(found) == {early.id, late.id}
    assert all(d.status == DeliveryStatus.PENDING and d.attempts == 0 for d in found.values())
    assert found[late.id].webhook_id == claimed.delivery.webhook_id
    # By event id: only what comes after it.
    after = await webhooks.replay(app, sub.id, "default", after_event=claimed.delivery.event_id)
    assert after is not None and after.reset == after.created == 0
    with pytest.raises(TetherError):
        await webhooks.replay(app, sub.id, "default")


async def test_retry_makes_one_delivery_due_now_with_a_fresh_schedule(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    await _subscribe(app, ["task.created"])
    await app.submit("wf", 0)
    await _fan_out_all(app)
    (claimed,) = await _claim(app)
    with pytest.raises(InvalidTransition):
        await webhooks.retry(app, claimed.delivery.id, "default")  # being delivered
    failed = _outcome(claimed, delivered=False, error="x", retry_at=None)
    await app.store.record_deliveries("d1", [failed], app.clock.now(), 5)
    again = await webhooks.retry(app, claimed.delivery.id, "default")
    assert again is not None and again.status == DeliveryStatus.PENDING and again.attempts == 0
    assert [c.delivery.id for c in await _claim(app)] == [claimed.delivery.id]


async def test_another_tenants_subscriptions_and_deliveries_do_not_exist(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    sub = await _subscribe(app, ["task.created"], tenant="t1")
    await app.submit("wf", 0, tenant="t1")
    await _fan_out_all(app)
    (delivery,) = await _all(app, tenant="t1")
    assert await webhooks.get(app, sub.id, "t2") is None
    assert await webhooks.list_(app, "t2") == []
    assert await webhooks.update(app, sub.id, "t2", enabled=False) is None
    assert await webhooks.rotate_secret(app, sub.id, "t2") is None
    assert not await webhooks.delete(app, sub.id, "t2")
    assert await webhooks.delivery(app, delivery.id, "t2") is None
    assert await webhooks.retry(app, delivery.id, "t2") is None
    assert await webhooks.replay(app, sub.id, "t2", since=0) is None
    assert await _all(app, tenant="t2") == []
    assert [s.id for s in await webhooks.list_(app, "t1")] == [sub.id]


async def test_a_callback_is_made_with_its_task_and_shown_again_on_a_replay(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    url = "https://93.184.216.34/cb"
    first = await app.submit("wf", 1, idempotency_key="k", callback_url=url)
    assert first.callback is not None and first.callback.secret.startswith("whsec_")
    assert first.callback.task_id == first.id
    assert first.callback.event_types == ["task.succeeded", "task.failed", "task.cancelled"]
    again = await app.submit("wf", 1, idempotency_key="k", callback_url=url)
    assert not again.created and again.id == first.id
    assert again.callback is not None and again.callback.secret == first.callback.secret
    assert (await app.submit("wf", 1)).callback is None
    (stored,) = await webhooks.list_(app, "default", task_id=first.id)
    assert stored.id == first.callback.id


async def test_purge_removes_deliveries_and_callbacks_of_purged_tasks(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    await _subscribe(app, ["*"])
    async with app.worker(webhooks=False):
        handle = await app.submit("wf", 0, callback_url="https://93.184.216.34/cb")
        await handle.result(timeout=10)
    await _fan_out_all(app)
    assert await _all(app, task_id=handle.id)
    assert await app.store.purge(app.clock.now() + 1) == 1
    assert await _all(app, task_id=handle.id) == []
    assert await webhooks.list_(app, "default", task_id=handle.id) == []


async def test_disabling_by_hand_fails_pending_deliveries_and_rotation_keeps_the_old_secret(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    sub = await _subscribe(app, ["task.created"])
    await app.submit("wf", 0)
    await _fan_out_all(app)
    off = await webhooks.update(app, sub.id, "default", enabled=False)
    assert off is not None and off.disabled_reason == "disabled by an operator"
    assert [d.status for d in await _all(app)] == [DeliveryStatus.FAILED]
    rotated = await webhooks.rotate_secret(app, sub.id, "default", overlap=60)
    assert rotated is not None and rotated.secret != sub.secret
    assert rotated.previous_secret == sub.secret
    assert rotated.signing_secrets(app.clock.now()) == [rotated.secret, sub.secret]
