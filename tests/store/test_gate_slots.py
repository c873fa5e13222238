"""The slots of a step limit in the store (ADR 91), on both backends: never more holders
than the limit; a freed slot is handed to the oldest waiter (a newcomer cannot take it)
and its task woken, or, if it was still running towards its suspension, re-queued by
that suspension; a holder whose task's lease expired holds nothing, nor does a handed
slot its waiter did not come for in time."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from tether import Context, TaskStatus, Tether, WaitReason
from tether.models.step_limits import StepLimit
from tether.store.base import Suspend
from tether.store.sql.gate_slots import HANDOFF_TTL

CRM = StepLimit("crm", 1)
LEASE = 30.0


@pytest.fixture
def t0() -> float:
    """The test's "now": a little after its tasks are submitted (so they are due)."""
    return time.time() + 100


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[Tether]:
    app = Tether(store_url)

    @app.workflow("work")
    async def work(ctx: Context, n: int) -> int:
        return n

    await app.open()
    yield app
    await app.close()


async def running(app: Tether, n: int, t0: float) -> list[tuple[str, int]]:
    """`n` tasks, claimed at `t0` (running, leased until t0 + LEASE): (id, attempt)."""
    ids = [(await app.submit("work", i)).id for i in range(n)]
    claimed = await app.store.claim("w", ["default"], n, t0, t0 + LEASE)
    by_id = {c.task.id: c.task.attempt for c in claimed}
    return [(task_id, by_id[task_id]) for task_id in ids]


async def suspend(app: Tether, task: tuple[str, int], at: float) -> None:
    op = Suspend(task[0], task[1], WaitReason.CONCURRENCY, at + 30)
    assert await app.store.commit([op], "w", at) == [True]


async def test_a_freed_slot_goes_to_the_oldest_waiter_whoever_comes_first(
    app: Tether, t0: float
) -> None:
    store = app.store
    a, b, c, d = await running(app, 4, t0)
    assert await store.acquire_step_slot(CRM, a[0], 1, a[1], t0 + 1)
    assert not await store.acquire_step_slot(CRM, b[0], 1, b[1], t0 + 2)
    assert not await store.acquire_step_slot(CRM, c[0], 1, c[1], t0 + 3)
    await suspend(app, b, t0 + 2)  # b parks; c is still running towards its suspension

    await store.release_step_slot(CRM, a[0], 1, a[1], t0 + 4)
    woken = await app.get(b[0])
    assert woken.status == TaskStatus.QUEUED and woken.run_at == t0 + 4
    assert [
        e.decision for e in await store.list_events(task_id=b[0]) if e.type == "task.queued"
    ] == ["slot_freed"]
    # handed to b: d, a newcomer, and c, behind b, cannot take it
    assert not await store.acquire_step_slot(CRM, d[0], 1, d[1], t0 + 5)
    assert not await store.acquire_step_slot(CRM, c[0], 1, c[1], t0 + 5)
    b = (b[0], (await store.claim("w", ["default"], 1, t0 + 6, t0 + 6 + LEASE))[0].task.attempt)
    assert await store.acquire_step_slot(CRM, b[0], 1, b[1], t0 + 6)
    usage = await store.step_limit_usage(t0 + 6)
    assert [(u.running, u.waiting) for u in usage] == [(1, 2)]

    # b ends: the slot goes to c, which had not parked yet: its suspension re-queues it
    await store.release_step_slot(CRM, b[0], 1, b[1], t0 + 7)
    assert (await app.get(c[0])).status == TaskStatus.RUNNING
    await suspend(app, c, t0 + 8)
    requeued = await app.get(c[0])
    assert requeued.status == TaskStatus.QUEUED, "the wake-up was not lost"
    queued = [e for e in await store.list_events(task_id=c[0]) if e.type == "task.queued"]
    assert [e.decision for e in queued] == ["gate_woken"]


async def test_a_holder_whose_lease_expired_holds_nothing(app: Tether, t0: float) -> None:
    store = app.store
    a, b = await running(app, 2, t0)
    assert await store.acquire_step_slot(CRM, a[0], 1, a[1], t0 + 1)
    assert not await store.acquire_step_slot(CRM, b[0], 1, b[1], t0 + LEASE - 1)
    assert await store.heartbeat("w", [b[0]], t0 + LEASE - 1, t0 + 3 * LEASE) == {b[0]: False}
    # a's worker is gone: its lease (t0 + LEASE) expires, and with it its slot
    assert await store.acquire_step_slot(CRM, b[0], 1, b[1], t0 + LEASE + 1)
    # a's late release (a worker that lost its lease) frees nothing of b's
    await store.release_step_slot(CRM, a[0], 1, a[1], t0 + LEASE + 2)
    usage = await store.step_limit_usage(t0 + LEASE + 2)
    assert [(u.running, u.waiting) for u in usage] == [(1, 0)]


async def test_a_handed_slot_lapses_when_its_waiter_does_not_come(app: Tether, t0: float) -> None:
    store = app.store
    a, b, c = await running(app, 3, t0)
    assert await store.acquire_step_slot(CRM, a[0], 1, a[1], t0 + 1)
    assert not await store.acquire_step_slot(CRM, b[0], 1, b[1], t0 + 2)
    await store.release_step_slot(CRM, a[0], 1, a[1], t0 + 3)  # handed to b
    assert not await store.acquire_step_slot(CRM, c[0], 1, c[1], t0 + 3 + HANDOFF_TTL - 1)
    assert await store.acquire_step_slot(CRM, c[0], 1, c[1], t0 + 3 + HANDOFF_TTL + 1)


async def test_the_limit_the_workers_use_is_stored_and_follows_a_change(
    app: Tether, t0: float
) -> None:
    store = app.store
    a, b = await running(app, 2, t0)
    assert await store.acquire_step_slot(CRM, a[0], 1, a[1], t0 + 1)
    wider = StepLimit("crm", 2)
    assert await store.acquire_step_slot(wider, b[0], 1, b[1], t0 + 2)
    assert [(u.max_running, u.running) for u in await store.step_limit_usage(t0 + 2)] == [(2, 2)]
