"""Webhook delivery end to end, on both backends: a real worker with its dispatcher, a
real HTTP receiver on 127.0.0.1 (allowlisted), signatures checked with the
`standardwebhooks` library's own `verify`. The faults: a receiver down for a while, a
slow one (past the timeout), one answering 500, one answering 410."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from standardwebhooks import Webhook

from receiver import Behaviour, Received, Receiver
from tether import Context, Tether, load_settings
from tether.models.webhooks import DeliveryFilter, DeliveryStatus, WebhookSubscription
from tether.services import webhooks

FAST = {
    "egress_allow": ["127.0.0.1"],
    "egress_timeout": 0.5,
    "webhook_retry_initial": 0.1,
    "webhook_retry_max_interval": 0.3,
    "webhook_poll_interval": 0.1,
    "webhook_lease_ttl": 5.0,
    "poll_interval": 0.1,
}


@pytest.fixture
async def build(store_url: str) -> AsyncIterator[Callable[..., Tether]]:
    apps: list[Tether] = []

    def make(**overrides: Any) -> Tether:
        app = Tether(settings=load_settings({"database_url": store_url, **FAST, **overrides}))

        @app.workflow("wf")
        async def wf(ctx: Context, x: int) -> int:
            return await ctx.step("double", _double, x)

        apps.append(app)
        return app

    yield make
    for app in apps:
        await app.close()


async def _double(x: int) -> int:
    return 2 * x


def verified(sub: WebhookSubscription, requests: list[Received]) -> list[dict[str, Any]]:
    """Every request's body, each checked against `sub`'s secret by the library."""
    hook = Webhook(sub.secret)
    return [hook.verify(r.body, r.headers) for r in requests]


async def _events_of(app: Tether, task_ids: list[str]) -> dict[int, str]:
    """The tasks' events, read past the feed's horizon (ADR 13): all that committed."""

    async def read(conn: Any) -> list[Any]:
        return await conn.fetchall("SELECT id, task_id, type FROM events ORDER BY id")

    rows = await app.store._run(read, write=False)  # type: ignore[attr-defined]
    return {int(r["id"]): r["type"] for r in rows if r["task_id"] in task_ids}


async def _wait_deliveries(app: Tether, sub_id: str, done: Callable[[list[Any]], bool]) -> None:
    # 30 s: on PostgreSQL an event reaches the outbox only past the feed's horizon (up
    # to 5 s behind an older open transaction, ADR 13), then waits out its backoff; 10 s
    # was too short on a loaded machine (CI saw 9 of 10 deliveries).
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        found = await app.store.list_deliveries(
            DeliveryFilter(tenant="default", subscription_id=sub_id, limit=1000)
        )
        if done(found):
            return
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.025)
    raise AssertionError(f"deliveries not as expected: {[(d.status, d.attempts) for d in found]}")


def _all_delivered(n: int) -> Callable[[list[Any]], bool]:
    return lambda found: (
        len(found) == n and all(d.status == DeliveryStatus.DELIVERED for d in found)
    )


async def test_every_event_arrives_signed_once_and_in_order_per_task(
    build: Callable[..., Tether],
) -> None:
    app = build()
    async with Receiver() as receiver:
        sub = await webhooks.create(app, "default", f"{receiver.url}/hook", ["*"])
        async with app.worker():
            handles = [await app.submit("wf", i) for i in range(10)]
            for h in handles:
                await h.result(timeout=10)
            events = await _events_of(app, [h.id for h in handles])
            await receiver.wait_for(lambda rs: len(rs) >= len(events), timeout=30)
            await _wait_deliveries(app, sub.id, _all_delivered(len(events)))
    bodies = verified(sub, receiver.requests)
    got = [b["data"]["event"]["id"] for b in bodies]
    assert sorted(got) == sorted(events)  # each event once: nothing lost, nothing twice
    per_task: dict[str, list[int]] = defaultdict(list)
    for b in bodies:
        per_task[b["data"]["event"]["task_id"]].append(b["data"]["event"]["id"])
        assert b["type"] == events[b["data"]["event"]["id"]]
        assert "input" not in b["data"]["task"] and "result" not in b["data"]["task"]
    assert all(ids == sorted(ids) for ids in per_task.values())
    assert {r.path for r in receiver.requests} == {"/hook"}


async def test_a_callback_url_hears_of_its_tasks_end(build: Callable[..., Tether]) -> None:
    app = build()
    async with Receiver() as receiver, app.worker():
        handle = await app.submit("wf", 4, callback_url=f"{receiver.url}/cb")
        assert handle.callback is not None
        await handle.result(timeout=10)
        await receiver.wait_for(lambda rs: len(rs) >= 1)
    (body,) = verified(handle.callback, receiver.requests)
    assert body["type"] == "task.succeeded"
    assert body["data"]["task"]["id"] == handle.id
    assert body["data"]["task"]["status"] == "succeeded"


async def test_a_receiver_down_for_a_while_gets_everything_when_back(
    build: Callable[..., Tether],
) -> None:
    app = build()
    down = Receiver()
    async with down:
        port = down.port
    sub = await webhooks.create(
        app, "default", f"http://127.0.0.1:{port}/hook", ["task.created", "task.succeeded"]
    )
    async with app.worker():
        handles = [await app.submit("wf", i) for i in range(5)]
        for h in handles:
            await h.result(timeout=10)
        # Every first attempt is refused (nothing listens), and retried.
        await _wait_deliveries(
            app, sub.id, lambda found: sum(1 for d in found if d.last_error) >= 5
        )
        async with Receiver(port=port) as back:
            await _wait_deliveries(app, sub.id, _all_delivered(10))
    bodies = verified(sub, back.requests)
    ids = {r.headers["webhook-id"] for r in back.requests}
    assert len(ids) == 10
    by_id: dict[str, set[bytes]] = defaultdict(set)
    for r in back.requests:
        by_id[r.headers["webhook-id"]].add(r.body)
    assert all(len(b) == 1 for b in by_id.values())  # a duplicate is the same message
    assert {(b["data"]["task"]["id"], b["type"]) for b in bodies} == {
        (h.id, t) for h in handles for t in ("task.created", "task.succeeded")
    }


async def test_a_slow_receiver_times_out_and_is_sent_again(build: Callable[..., Tether]) -> None:
    app = build(egress_timeout=0.2)
    slow = Behaviour(delay=1.0)
    async with Receiver(slow) as receiver:
        sub = await webhooks.create(app, "default", receiver.url, ["task.created"])
        async with app.worker():
            await app.submit("wf", 1)
            await _wait_deliveries(
                app, sub.id, lambda f: bool(f) and f[0].last_error == "timed out"
            )
            slow.delay = 0
            await _wait_deliveries(app, sub.id, _all_delivered(1))
    (delivery,) = await app.store.list_deliveries(DeliveryFilter(tenant="default"))
    assert delivery.attempts >= 2
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.webhook_id}
    verified(sub, receiver.requests)


async def test_500_is_retried_with_backoff_until_accepted(build: Callable[..., Tether]) -> None:
    app = build()
    answers = iter([500, 503, 200])

    def respond(_: Received) -> Behaviour:
        return Behaviour(status=next(answers, 200))

    async with Receiver(respond=respond) as receiver:
        sub = await webhooks.create(app, "default", receiver.url, ["task.created"])
        async with app.worker():
            await app.submit("wf", 1)
            await _wait_deliveries(app, sub.id, _all_delivered(1))
    (delivery,) = await app.store.list_deliveries(DeliveryFilter(tenant="default"))
    assert delivery.attempts == 3 and delivery.last_status_code == 200
    assert len(receiver.requests) == 3
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    stamps = [r.at for r in receiver.requests]
    assert stamps[1] - stamps[0] >= 0.05  # backed off (0.1 s +- 20%), not hammered


async def test_retries_run_out_then_the_delivery_fails(build: Callable[..., Tether]) -> None:
    app = build(webhook_max_attempts=2)
    async with Receiver(Behaviour(status=500)) as receiver:
        sub = await webhooks.create(app, "default", receiver.url, ["task.created"])
        async with app.worker():
            await app.submit("wf", 1)
            await _wait_deliveries(
                app, sub.id, lambda f: bool(f) and f[0].status == DeliveryStatus.FAILED
            )
    (delivery,) = await app.store.list_deliveries(DeliveryFilter(tenant="default"))
    assert delivery.attempts == 2 and delivery.last_error == "HTTP 500"
    assert len(receiver.requests) == 2


async def test_410_disables_the_subscription_and_calls_the_hook(
    build: Callable[..., Tether],
) -> None:
    app = build()
    told: list[WebhookSubscription] = []

    async def hook(sub: WebhookSubscription) -> None:
        told.append(sub)

    app.on_webhook_disabled.append(hook)
    async with Receiver(Behaviour(status=410)) as receiver:
        sub = await webhooks.create(app, "default", receiver.url, ["task.created"])
        async with app.worker():
            await app.submit("wf", 1)
            for _ in range(200):
                if told:
                    break
                await asyncio.sleep(0.025)
            await app.submit("wf", 2)  # nothing more goes out
            await asyncio.sleep(0.3)
    assert [s.id for s in told] == [sub.id]
    assert told[0].disabled_reason == "the receiver answered 410 Gone"
    assert len(receiver.requests) == 1
    stored = await webhooks.get(app, sub.id, "default")
    assert stored is not None and stored.status == "disabled"


async def test_during_a_rotation_each_delivery_verifies_with_the_old_and_new_secret(
    build: Callable[..., Tether],
) -> None:
    app = build()
    async with Receiver() as receiver:
        old = await webhooks.create(app, "default", receiver.url, ["task.succeeded"])
        new = await webhooks.rotate_secret(app, old.id, "default", overlap=3600)
        assert new is not None
        async with app.worker():
            await (await app.submit("wf", 1)).result(timeout=10)
            await receiver.wait_for(lambda rs: len(rs) >= 1)
    verified(old, receiver.requests)
    verified(new, receiver.requests)
    body = json.loads(receiver.requests[0].body)
    assert body["type"] == "task.succeeded"
