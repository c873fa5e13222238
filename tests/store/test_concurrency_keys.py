"""Concurrency keys (ADR 89), on both backends: a key admits `max` tasks at once; the
rest wait (`waiting`, reason `concurrency`, holding no slot) and are queued, in
order, as holders end however they end; a task waiting on something else still holds
its key; keys are per tenant unless fleet-wide, and shared by name."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helpers import events_through
from tether import (
    Concurrency,
    Context,
    InputValidationError,
    TaskStatus,
    Tether,
    WaitReason,
)
from tether.testing import TestEnvironment


class Meter:
    """How many steps run at once, at most."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.order: list[int] = []

    async def hold(self, n: int) -> int:
        self.now += 1
        self.most = max(self.most, self.now)
        await asyncio.sleep(0.01)
        self.now -= 1
        self.order.append(n)
        return n


def _app(store_url: str, meter: Meter) -> Tether:
    app = Tether(store_url)

    @app.workflow("pair", concurrency=Concurrency(max=2))
    async def pair(ctx: Context, n: int) -> int:
        return await ctx.step("hold", meter.hold, n)

    @app.workflow("one", concurrency=Concurrency(max=1, key="ledger"))
    async def one(ctx: Context, n: int, fail: bool = False) -> int:
        if fail:
            raise ValueError("bad entry")
        return await ctx.step("hold", meter.hold, n)

    @app.workflow("also_ledger", concurrency=Concurrency(max=1, key="ledger"))
    async def also_ledger(ctx: Context, n: int) -> int:
        await ctx.wait_for_signal("go")
        return n

    @app.workflow(
        "per_customer", concurrency=Concurrency(max=1, key=lambda i: i["customer"].lower())
    )
    async def per_customer(ctx: Context, customer: Any, n: int = 0) -> int:
        return await ctx.step("hold", meter.hold, n)

    @app.workflow("fleet_wide", concurrency=Concurrency(max=1, key="gpu", fleet=True))
    async def fleet_wide(ctx: Context) -> None:
        return None

    return app


async def test_a_key_admits_its_max_and_queues_the_rest_in_order(store_url: str) -> None:
    meter = Meter()
    app = _app(store_url, meter)
    handles = await app.submit_many("pair", [{"n": i} for i in range(6)])
    tasks = [await app.get(h.id) for h in handles]
    assert [t.status for t in tasks] == [TaskStatus.QUEUED] * 2 + [TaskStatus.WAITING] * 4
    assert {t.wait_reason for t in tasks[2:]} == {WaitReason.CONCURRENCY}
    assert all(t.run_at is None for t in tasks[2:])
    assert tasks[0].concurrency_key == "default/pair"
    async with TestEnvironment(app, in_memory=False) as env:  # its worker starts now
        await env.run_until_idle()
        assert [await h.result(timeout=5) for h in handles] == list(range(6))
        events = await events_through(app, handles[5].id, "task.succeeded")
    assert meter.most == 2
    assert meter.order[2:] == [2, 3, 4, 5]
    assert [(e.type, e.decision) for e in events[:3]] == [
        ("task.created", "submitted"),
        ("task.waiting", "concurrency"),
        ("task.queued", "concurrency"),
    ]


async def test_any_end_frees_the_key_and_a_waiter_on_it_still_holds(store_url: str) -> None:
    meter = Meter()
    app = _app(store_url, meter)
    failing = await app.submit("one", {"n": 0, "fail": True})
    signalled = await app.submit("also_ledger", {"n": 1})  # shares "ledger"
    last = await app.submit("one", {"n": 2})
    assert (await app.get(signalled.id)).wait_reason == WaitReason.CONCURRENCY
    async with TestEnvironment(app, in_memory=False) as env:
        await env.run_until_idle()
        assert (await app.get(failing.id)).status == TaskStatus.FAILED
        waiting = await app.get(signalled.id)
        assert waiting.status == TaskStatus.WAITING
        assert waiting.wait_reason == WaitReason.SIGNAL  # admitted: it holds "ledger"
        assert (await app.get(last.id)).wait_reason == WaitReason.CONCURRENCY
        await app.signal(signalled.id, "go")
        await env.run_until_idle()
        assert await last.result(timeout=5) == 2


async def test_cancelling_a_waiter_or_a_holder(store_url: str) -> None:
    meter = Meter()
    app = _app(store_url, meter)
    holder, waiter, third = await app.submit_many("one", [{"n": i} for i in range(3)])
    await app.cancel(waiter.id)  # never admitted: frees nothing
    assert (await app.get(third.id)).wait_reason == WaitReason.CONCURRENCY
    await app.cancel(holder.id)  # queued, admitted: its end admits the next
    assert (await app.get(third.id)).status == TaskStatus.QUEUED
    async with TestEnvironment(app, in_memory=False) as env:
        await env.run_until_idle()
        assert await third.result(timeout=5) == 2


async def test_keys_per_input_per_tenant_and_fleet_wide(store_url: str) -> None:
    meter = Meter()
    app = _app(store_url, meter)
    try:
        a1, a2, b1 = await app.submit_many(
            "per_customer", [{"customer": "a"}, {"customer": "a"}, {"customer": "b"}]
        )
        assert [(await app.get(h.id)).status for h in (a1, a2, b1)] == [
            TaskStatus.QUEUED,
            TaskStatus.WAITING,
            TaskStatus.QUEUED,
        ]
        other = await app.submit("per_customer", {"customer": "a"}, tenant="other")
        assert (await app.get(other.id)).status == TaskStatus.QUEUED  # its own "a"
        g1 = await app.submit("fleet_wide", tenant="t1")
        g2 = await app.submit("fleet_wide", tenant="t2")
        assert (await app.get(g1.id, tenant="t1")).concurrency_key == "*/gpu"
        assert (await app.get(g2.id, tenant="t2")).status == TaskStatus.WAITING
        with pytest.raises(InputValidationError, match="concurrency key"):
            app.new_task("per_customer", {"customer": None})
    finally:
        await app.close()


def test_a_limit_is_a_whole_number_from_one() -> None:
    with pytest.raises(ValueError, match="max"):
        Concurrency(max=0)


async def test_a_step_waiting_for_a_step_limit_is_not_a_key_waiter(store_url: str) -> None:
    """Both wait with reason `concurrency`; only a task never started (attempt 0)
    waits for its key. A keyed task held at a step limit keeps its key, and is woken
    by the step limit, not admitted again by the key."""
    app = Tether(store_url)
    app.step_limit("crm", 1)
    gate = asyncio.Event()

    @app.step(integration="crm")
    async def call_crm() -> None:
        await gate.wait()

    @app.workflow("sync", concurrency=Concurrency(max=1, key=lambda i: i["customer"]))
    async def sync(ctx: Context, customer: str) -> None:
        await call_crm()

    a1, b1, a2 = await app.submit_many(
        "sync", [{"customer": "a"}, {"customer": "b"}, {"customer": "a"}]
    )
    assert (await app.get(a2.id)).wait_reason == WaitReason.CONCURRENCY  # a's key is full
    try:
        async with app.worker(concurrency=4):
            async with asyncio.timeout(20):
                while True:  # one of a1, b1 holds the crm slot, the other waits for it
                    tasks = [await app.get(h.id) for h in (a1, b1)]
                    if any(t.status == TaskStatus.WAITING for t in tasks):
                        break
                    await asyncio.sleep(0.02)
            held = next(t for t in tasks if t.status == TaskStatus.WAITING)
            assert held.wait_reason == WaitReason.CONCURRENCY and held.attempt >= 1
            assert (await app.get(a2.id)).status == TaskStatus.WAITING  # still keyed out
            gate.set()
            for h in (a1, b1, a2):
                await h.result(timeout=20)
        events = await app.store.list_events(task_id=held.id)
        assert "concurrency" not in [e.decision for e in events if e.type == "task.queued"]
    finally:
        await app.close()
