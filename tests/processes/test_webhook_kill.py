"""A webhook dispatcher SIGKILLed mid-delivery loses nothing, on both backends: worker
process w1 (its dispatcher inside) sends a delivery the receiver holds unanswered, is
killed, and w2 sends it again after the lease expires, with the same `webhook-id`;
every event arrives, signed, and a duplicate is only ever the same message again."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from apps.crashy import app as crashy
from apps.procs import WorkerProcess, wait_until
from receiver import Behaviour, Received, Receiver
from tether import Tether, load_settings
from tether.models.webhooks import DeliveryFilter, DeliveryStatus
from tether.services import webhooks

pytestmark = pytest.mark.slow

ENV = {
    "TETHER_EGRESS_ALLOW": "127.0.0.1",
    "TETHER_WEBHOOK_LEASE_TTL": "3",
    "TETHER_WEBHOOK_POLL_INTERVAL": "0.1",
    "TETHER_WEBHOOK_RETRY_INITIAL": "0.2",
    "TETHER_POLL_INTERVAL": "0.1",
}
TASKS = 6


async def test_a_dispatcher_killed_mid_delivery_loses_nothing(
    store_url: str, tmp_path: Path
) -> None:
    app = Tether(settings=load_settings({"database_url": store_url, "egress_allow": "127.0.0.1"}))
    await app.open()
    held = Behaviour(delay=60)  # the first request hangs until w1 is dead
    answered = Behaviour()

    def respond(request: Received) -> Behaviour:
        return held if not receiver.requests else answered

    workers: list[WorkerProcess] = []
    try:
        async with Receiver(respond=respond) as receiver:
            sub = await webhooks.create(app, "default", f"{receiver.url}/in", ["*"])
            await app.submit_batch(
                [crashy.new_task("greet", {"name": f"n{i}", "times": 1}) for i in range(TASKS)]
            )
            w1 = WorkerProcess(store_url, "w1", tmp_path, app="apps.crashy:app", env=ENV)
            workers.append(w1)
            await wait_until(lambda: len(receiver.requests) >= 1, 30, "a delivery", alive=[w1])
            w1.kill()
            first = receiver.requests[0].headers["webhook-id"]

            w2 = WorkerProcess(store_url, "w2", tmp_path, app="apps.crashy:app", env=ENV)
            workers.append(w2)

            async def all_delivered() -> bool:
                tasks = await app.list_tasks()
                if len(tasks) < TASKS or not all(t.status.terminal for t in tasks):
                    return False
                events = set()
                for t in tasks:
                    events |= {e.id for e in await app.store.list_events(task_id=t.id)}
                found = await app.store.list_deliveries(
                    DeliveryFilter(tenant="default", limit=1000)
                )
                return {d.event_id for d in found} == events and all(
                    d.status == DeliveryStatus.DELIVERED for d in found
                )

            await wait_until(all_delivered, 60, "every event delivered", alive=[w2])
    finally:
        for w in workers:
            w.close()
        await app.close()

    hook = Webhook(sub.secret)
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for request in receiver.requests:
        hook.verify(request.body, request.headers)
        bodies[request.headers["webhook-id"]].add(request.body)
    assert all(len(b) == 1 for b in bodies.values())  # a duplicate is the same message
    assert (
        first in bodies
        and sum(1 for r in receiver.requests if r.headers["webhook-id"] == first) >= 2
    )  # the held one was sent again, by w2
    delivered = await _delivered_ids(store_url)
    assert set(bodies) == delivered


async def _delivered_ids(url: str) -> set[str]:
    app = Tether(url)
    await app.open()
    try:
        found = await app.store.list_deliveries(DeliveryFilter(tenant="default", limit=1000))
        return {d.webhook_id for d in found}
    finally:
        await app.close()
