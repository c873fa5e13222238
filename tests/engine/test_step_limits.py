"""Step limits (ADR 91), on both backends with the manual clock of `TestEnvironment`: at
most `max_running` steps of an integration run at once; the others wait
(`waiting`/`concurrency`, their task slot freed) and each starts as soon as a holder
finishes, handed its slot (the clock never moves here, so no re-check could have
started it). Steps of other integrations are not held."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tether import Context, RetryPolicy, TaskStatus, Tether, Transient, WaitReason
from tether.testing import TestEnvironment


class Calls:
    """Each call waits for its own release; who runs now, and the most at once."""

    def __init__(self) -> None:
        self.running: list[str] = []
        self.started: list[str] = []
        self.most = 0
        self.release: dict[str, asyncio.Event] = {}

    async def __call__(self, who: str) -> str:
        self.started.append(who)
        self.running.append(who)
        self.most = max(self.most, len(self.running))
        try:
            await self.release.setdefault(who, asyncio.Event()).wait()
        finally:
            self.running.remove(who)
        return who

    def let_go(self, who: str) -> None:
        self.release.setdefault(who, asyncio.Event()).set()


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[Tether]:
    app = Tether(store_url)
    yield app
    await app.close()


async def until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_at_most_n_run_at_once_and_each_waiter_starts_when_a_holder_ends(
    app: Tether,
) -> None:
    app.step_limit("crm", max_running=2)
    calls = Calls()

    @app.step(integration="crm")
    async def save(who: str) -> str:
        return await calls(who)

    @app.step(integration="mail")
    async def mail(who: str) -> str:
        return f"mailed {who}"

    @app.workflow("sync")
    async def sync(ctx: Context, who: str) -> str:
        await mail(who)  # another integration: never held
        return await save(who)

    async with TestEnvironment(app, in_memory=False, concurrency=10):
        names = [f"t{i}" for i in range(6)]
        handles = {who: await app.submit("sync", who) for who in names}

        async def parked() -> list[str]:
            out = []
            for who, h in handles.items():
                task = await app.get(h.id)
                if task.status == TaskStatus.WAITING:
                    assert task.wait_reason == WaitReason.CONCURRENCY
                    out.append(who)
            return out

        await until(lambda: len(calls.running) == 2, "two holders")
        await until(lambda: _len_is(parked(), 4), "four waiters")
        ended: list[str] = []
        while len(ended) < len(names):
            before = list(calls.started)
            holder = calls.running[0]
            calls.let_go(holder)
            assert await handles[holder].result(timeout=10) == holder
            ended.append(holder)
            left = len(names) - len(ended)
            if left >= 2:  # a waiter takes the freed slot: one more start, never three
                await until(lambda b=before: len(calls.started) == len(b) + 1, "a waiter")
                await until(lambda: len(calls.running) == 2, "two holders again")
        assert calls.most == 2
        assert sorted(ended) == names
        for who, h in handles.items():
            steps = await app.steps(h.id)
            assert [s.meta.get("integration") for s in steps] == ["mail", "crm"], who
        handed = [
            e
            for h in handles.values()
            for e in await app.store.list_events(task_id=h.id)
            if e.type == "task.queued" and e.decision == "slot_freed"
        ]
        assert len(handed) == 4, "each waiter was handed a slot"
        usage = await app.store.step_limit_usage(app.clock.now())
        assert [(u.integration, u.max_running, u.running, u.waiting) for u in usage] == [
            ("crm", 2, 0, 0)
        ]


async def _len_is(found: Any, n: int) -> bool:
    return len(await found) == n


async def test_a_step_limit_counts_tenants_together_and_shows_each_its_own(app: Tether) -> None:
    app.step_limit("crm", max_running=1)
    calls = Calls()

    @app.step(integration="crm")
    async def save(who: str) -> str:
        return await calls(who)

    @app.workflow("sync")
    async def sync(ctx: Context, who: str) -> str:
        return await save(who)

    async with TestEnvironment(app, in_memory=False):
        first = await app.submit("sync", "a", tenant="acme")
        await until(lambda: calls.running == ["a"], "acme's step to run")
        second = await app.submit("sync", "g", tenant="globex")
        await until(lambda: _status_is(app, second.id, TaskStatus.WAITING), "globex's step to wait")
        now = app.clock.now()
        fleet = await app.store.step_limit_usage(now)
        assert [(u.running, u.waiting) for u in fleet] == [(1, 1)]
        assert [(u.running, u.waiting) for u in await app.store.step_limit_usage(now, "acme")] == [
            (1, 0)
        ]
        assert [
            (u.running, u.waiting) for u in await app.store.step_limit_usage(now, "globex")
        ] == [(0, 1)]
        calls.let_go("a")
        calls.let_go("g")
        assert await first.result(timeout=10) == "a"
        assert await second.result(timeout=10) == "g"


async def _status_is(app: Tether, task_id: str, status: TaskStatus) -> bool:
    return (await app.get(task_id)).status == status


async def test_a_step_its_breaker_holds_takes_no_slot(app: Tether) -> None:
    app.step_limit("crm", max_running=1)
    app.breaker("crm", failures=1, cool_down=60)
    down = {"crm": True}

    @app.step(integration="crm", retry=RetryPolicy(max_attempts=1))
    async def save(who: str) -> str:
        if down["crm"]:
            raise Transient("crm is down")
        return who

    @app.workflow("sync", retry=RetryPolicy(max_attempts=1))
    async def sync(ctx: Context, who: str) -> str:
        return await save(who)

    async with TestEnvironment(app, in_memory=False) as env:
        await app.submit("sync", "first")
        await env.run_until_idle(skip_time=False)
        down["crm"] = False
        held = [await app.submit("sync", f"h{i}") for i in range(3)]
        await env.run_until_idle(skip_time=False)
        for h in held:
            task = await app.get(h.id)
            assert task.wait_reason == WaitReason.CIRCUIT_OPEN, task
        usage = await app.store.step_limit_usage(app.clock.now())
        assert [(u.running, u.waiting) for u in usage] == [(0, 0)], "held by the breaker only"
        await env.run_until_idle()  # the cool-down passes: a probe, then the others in turn
        assert sorted([await h.result(timeout=10) for h in held]) == ["h0", "h1", "h2"]
