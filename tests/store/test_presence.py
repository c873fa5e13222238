"""Worker presence and the tasks no live worker claims (ADR 64), on both backends:
workers record what they claim; a queued task whose (workflow, version) no live worker
of its queue has is listed by `services.health.unserved`."""

from __future__ import annotations

from collections.abc import Callable

from tether import Context, Tether
from tether.engine.presence import PRESENCE_TTL
from tether.services import health
from tether.store.base import WorkerPresence


def _app(make_app: Callable[[], Tether]) -> Tether:
    app = make_app()
    for version in (1, 2):

        @app.workflow("greet", version=version)
        async def greet(ctx: Context) -> None:
            raise AssertionError("no worker runs in this test")

    return app


async def test_presence_records_are_renewed_replaced_and_forgotten(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    store, now = app.store, app.clock.now()
    await store.worker_seen(WorkerPresence("a", ["default"], [("greet", 1)], now - 100, now - 100))
    await store.worker_seen(WorkerPresence("b", ["x", "y"], [("greet", 2)], now - 5, now - 5))
    assert [w.id for w in await store.live_workers(now - PRESENCE_TTL)] == ["b"]
    await store.worker_seen(WorkerPresence("a", ["default"], [("greet", 2)], now - 100, now))
    live = await store.live_workers(now - PRESENCE_TTL)
    assert [(w.id, w.queues, w.workflows, w.started_at) for w in live] == [
        ("a", ["default"], [("greet", 2)], now - 100),
        ("b", ["x", "y"], [("greet", 2)], now - 5),
    ]
    await store.worker_gone("a")
    assert [w.id for w in await store.live_workers(0)] == ["b"]
    # A record not renewed for a day is deleted by the next worker's record.
    await store.worker_seen(WorkerPresence("c", ["default"], [], now + 86401, now + 86401))
    assert [w.id for w in await store.live_workers(0)] == ["c"]


async def test_unserved_lists_queued_versions_no_live_worker_of_their_queue_claims(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    now = app.clock.now()
    for version, queue in ((1, "default"), (2, "default"), (2, "default"), (1, "other")):
        await app.submit("greet", version=version, queue=queue)
    await app.submit("greet", run_at=now + 3600)  # not runnable yet: not waiting on anyone
    store = app.store
    await store.worker_seen(WorkerPresence("v1", ["default"], [("greet", 1)], now, now))
    await store.worker_seen(
        WorkerPresence("gone", ["default"], [("greet", 2)], now - 60, now - PRESENCE_TTL - 1)
    )
    found = await health.unserved(app)
    assert [w.id for w in found.workers] == ["v1"]
    assert [(v.queue, v.workflow, v.version, v.tasks) for v in found.waiting] == [
        ("default", "greet", 2, 2),  # v2 has no live worker (the one that had it vanished)
        ("other", "greet", 1, 1),  # v1 has one, but not on this queue
    ]
    assert all(v.oldest >= 0 for v in found.waiting)
    await store.worker_seen(WorkerPresence("v2", ["default", "other"], [("greet", 2)], now, now))
    found = await health.unserved(app)
    assert [(v.queue, v.version) for v in found.waiting] == [("other", 1)]
