"""Circuit breakers (ADR 91), on both backends with the manual clock of
`TestEnvironment`: a breaker opens after N transient failures in a row (or a failure
rate), holds the steps that need its integration (`waiting`/`circuit_open`, not failed)
until its cool-down ends, lets one probe through while the others keep waiting, and a
successful probe closes it and wakes them at once; a failed probe opens it again.
Permanent failures count for nothing. Opening notifies, once. By hand: opened until
closed by hand; a tenant's own hold leaves the other tenants alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from smtp_server import SmtpServer
from tether import (
    Context,
    Permanent,
    RetryPolicy,
    TaskStatus,
    Tether,
    Transient,
    WaitReason,
    load_settings,
)
from tether.models.breakers import FLEET, Breaker, BreakerState
from tether.services import breakers
from tether.testing import TestEnvironment

NO_RETRY = RetryPolicy(max_attempts=1)


class Crm:
    """The outside system: up or down, and each call recorded (with the clock's time).
    While `gate` is set, a call waits on it (to watch a probe in flight)."""

    def __init__(self, app: Tether) -> None:
        self.app = app
        self.up = False
        self.permanent = False
        self.calls: list[tuple[str, float]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, who: str) -> str:
        self.calls.append((who, self.app.clock.now()))
        if self.gate is not None:
            await self.gate.wait()
        if self.permanent:
            raise Permanent("no such customer")
        if not self.up:
            raise Transient("crm is down")
        return f"saved {who}"


@pytest.fixture
async def build(store_url: str) -> AsyncIterator[Callable[..., tuple[Tether, Crm]]]:
    apps: list[Tether] = []

    def make(**settings: Any) -> tuple[Tether, Crm]:
        app = Tether(settings=load_settings({"database_url": store_url, **settings}))
        crm = Crm(app)

        @app.step(name="save", integration="crm", retry=NO_RETRY)
        async def save(who: str) -> str:
            return await crm(who)

        @app.workflow("sync", retry=NO_RETRY)
        async def sync(ctx: Context, who: str) -> str:
            return await save(who)

        apps.append(app)
        return app, crm

    yield make
    for app in apps:
        await app.close()


async def fleet_breaker(app: Tether) -> Breaker:
    found = [
        b for b in await app.store.list_breakers() if (b.tenant, b.integration) == (FLEET, "crm")
    ]
    assert found, "no breaker row"
    return found[0]


async def until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    """Wait for `check()` (sync or async) to be true, with a deadline."""
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


async def waiting_on_circuit(app: Tether, task_id: str) -> bool:
    task = await app.get(task_id)
    return task.status == TaskStatus.WAITING and task.wait_reason == WaitReason.CIRCUIT_OPEN


async def test_a_breaker_opens_holds_probes_one_at_a_time_and_closes(
    build: Callable[..., tuple[Tether, Crm]],
) -> None:
    with SmtpServer() as smtp:
        app, crm = build(
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_starttls=False,
            smtp_from="tether@example.test",
            poll_interval=0.05,
            notifications={
                "channels": {"ops": {"type": "email", "to": "ops@example.test"}},
                "routes": [{"on": ["circuit.opened"], "channels": ["ops"]}],
            },
        )
        app.breaker("crm", failures=3, cool_down=60)
        async with TestEnvironment(app, in_memory=False) as env:
            failed = [await app.submit("sync", f"f{i}") for i in range(3)]
            await env.run_until_idle(skip_time=False)
            for h in failed:
                assert (await app.get(h.id)).status == TaskStatus.FAILED
            opened = await fleet_breaker(app)
            assert opened.state == BreakerState.OPEN and opened.opens == 1
            assert opened.reason == "3 transient failures in a row"
            assert opened.open_until == pytest.approx(opened.opened_at + 60)  # type: ignore[operator]

            # held, not failed: waiting until the cool-down ends, the CRM not called
            crm.up, crm.gate = True, asyncio.Event()
            held = [await app.submit("sync", who) for who in ("a", "b")]
            await env.run_until_idle(skip_time=False)
            for h in held:
                task = await app.get(h.id)
                assert task.status == TaskStatus.WAITING, task
                assert task.wait_reason == WaitReason.CIRCUIT_OPEN
                assert task.run_at == pytest.approx(opened.open_until)
            assert len(crm.calls) == 3

            # the cool-down ends: one probe goes, the other keeps waiting
            env.clock.set(opened.open_until or 0)
            await until(lambda: len(crm.calls) == 4, "a probe to call the CRM")
            prober = crm.calls[3][0]
            other = next(h for h, who in zip(held, "ab", strict=True) if who != prober)
            await until(lambda: waiting_on_circuit(app, other.id), "the other step to wait")
            assert (await fleet_breaker(app)).state == BreakerState.HALF_OPEN
            assert len(crm.calls) == 4

            # the probe succeeds: closed, and the other step is woken at once (the clock
            # has not moved: its own wait ran a whole cool-down longer)
            crm.gate.set()
            crm.gate = None
            results = [await h.result(timeout=10) for h in held]
            assert sorted(results) == ["saved a", "saved b"]
            closed = await fleet_breaker(app)
            assert closed.state == BreakerState.CLOSED and closed.failures == 0
            woken = [
                e
                for e in await app.store.list_events(task_id=other.id)
                if e.type == "task.queued" and e.decision == "circuit_closed"
            ]
            assert len(woken) == 1

            # the opening was announced once, by mail
            notes = [
                n for n in await app.store.list_notifications() if n.trigger == "circuit.opened"
            ]
            assert len(notes) == 1 and notes[0].tenant == FLEET
            await until(lambda: len(smtp.messages) == 1, "the mail")
            mail = smtp.messages[0]
            assert mail["Subject"] == "[tether] Circuit open: crm"
            body = mail.get_content()
            assert "every tenant" in body and "3 transient failures in a row" in body
            assert "crm is down" not in body, "a fleet-wide breaker quotes no tenant's error"


async def test_a_failed_probe_opens_it_again_without_a_second_notice(
    build: Callable[..., tuple[Tether, Crm]],
) -> None:
    app, crm = build()
    app.breaker("crm", failures=2, cool_down=30)
    async with TestEnvironment(app, in_memory=False) as env:
        for i in range(2):
            await app.submit("sync", f"f{i}")
        await env.run_until_idle(skip_time=False)
        first = await fleet_breaker(app)
        assert first.state == BreakerState.OPEN
        probe = await app.submit("sync", "probe")
        await env.run_until_idle(skip_time=False)
        assert await waiting_on_circuit(app, probe.id)
        env.clock.set(first.open_until or 0)
        await env.run_until_idle(skip_time=False)
        assert (await app.get(probe.id)).status == TaskStatus.FAILED  # the probe's own call
        again = await fleet_breaker(app)
        assert again.state == BreakerState.OPEN and again.reason == "a probe failed"
        assert again.opens == 1, "a re-opening is not a new opening"
        assert again.open_until == pytest.approx(app.clock.now() + 30)
        assert len(crm.calls) == 3


async def test_permanent_failures_count_for_nothing_and_a_success_resets_the_count(
    build: Callable[..., tuple[Tether, Crm]],
) -> None:
    app, crm = build()
    app.breaker("crm", failures=2, cool_down=30)
    async with TestEnvironment(app, in_memory=False) as env:
        crm.permanent = True
        for i in range(3):
            await app.submit("sync", f"p{i}")
        await env.run_until_idle(skip_time=False)
        crm.permanent = False
        for up in (False, True, False):  # failure, success, failure: never two in a row
            crm.up = up
            await app.submit("sync", "x")
            await env.run_until_idle(skip_time=False)
        b = await fleet_breaker(app)
        assert b.state == BreakerState.CLOSED and b.failures == 1
        crm.up = True
        last = await app.submit("sync", "y")
        await env.run_until_idle(skip_time=False)
        assert await last.result(timeout=5) == "saved y"
        assert len(crm.calls) == 7


async def test_a_failure_rate_opens_it_counting_the_successes_it_held_back(
    build: Callable[..., tuple[Tether, Crm]],
) -> None:
    app, crm = build()
    app.breaker("crm", failures=None, failure_rate=0.5, window=60, min_calls=4, cool_down=30)
    async with TestEnvironment(app, in_memory=False) as env:
        for up in (True, True, False):  # 1 of 3 failed, and fewer than 4 calls
            crm.up = up
            await app.submit("sync", "x")
            await env.run_until_idle(skip_time=False)
        assert (await fleet_breaker(app)).state == BreakerState.CLOSED
        crm.up = False
        await app.submit("sync", "x")  # 2 of 4: half
        await env.run_until_idle(skip_time=False)
        b = await fleet_breaker(app)
        assert b.state == BreakerState.OPEN
        assert b.reason == "failure rate 50% of 4 calls over 60 s"


async def test_opened_by_hand_it_holds_until_closed_by_hand(
    build: Callable[..., tuple[Tether, Crm]],
) -> None:
    app, crm = build()
    app.breaker("crm", failures=3, cool_down=5)
    crm.up = True
    async with TestEnvironment(app, in_memory=False) as env:
        view = await breakers.open_breaker(app, "crm", by="ops", reason="CRM upgrade")
        assert view.state == BreakerState.OPEN and view.fleet is not None
        assert view.fleet.manual and view.fleet.open_until is None
        assert view.fleet.reason == "opened by hand: CRM upgrade"
        held = await app.submit("sync", "a")
        await env.run_until_idle(skip_time=False)
        assert await waiting_on_circuit(app, held.id)
        env.clock.advance(60)  # far past the cool-down: opened by hand, it stays open
        await env.run_until_idle(skip_time=False)
        assert await waiting_on_circuit(app, held.id)
        assert crm.calls == []

        closed = await breakers.close_breaker(app, "crm", by="ops")
        assert closed.state == BreakerState.CLOSED
        assert await held.result(timeout=10) == "saved a"  # woken: the clock did not move


async def test_a_tenants_own_hold_leaves_the_other_tenants_alone(
    build: Callable[..., tuple[Tether, Crm]],
) -> None:
    app, crm = build()
    app.breaker("crm", failures=3, cool_down=5)
    crm.up = True
    async with TestEnvironment(app, in_memory=False) as env:
        await breakers.open_breaker(app, "crm", tenant="acme", by="acme-ops")
        mine = await app.submit("sync", "acme", tenant="acme")
        theirs = await app.submit("sync", "globex", tenant="globex")
        await env.run_until_idle(skip_time=False)
        assert await theirs.result(timeout=5) == "saved globex"
        assert await waiting_on_circuit(app, mine.id)
        assert (await breakers.view(app, "crm", "globex")).state == BreakerState.CLOSED
        view = await breakers.view(app, "crm", "acme")
        assert view.state == BreakerState.OPEN and view.own is not None and view.fleet is None
        await breakers.close_breaker(app, "crm", tenant="acme", by="acme-ops")
        assert await mine.result(timeout=10) == "saved acme"


async def test_per_tenant_breakers_count_each_tenants_failures_alone(
    build: Callable[..., tuple[Tether, Crm]],
) -> None:
    app, crm = build()
    app.breaker("crm", failures=2, cool_down=30, per_tenant=True)
    async with TestEnvironment(app, in_memory=False) as env:
        for _ in range(2):
            await app.submit("sync", "acme", tenant="acme")
        await env.run_until_idle(skip_time=False)
        crm.up = True
        held = await app.submit("sync", "acme", tenant="acme")
        free = await app.submit("sync", "globex", tenant="globex")
        await env.run_until_idle(skip_time=False)
        assert await free.result(timeout=5) == "saved globex"
        assert await waiting_on_circuit(app, held.id)
        rows = {(b.tenant, b.integration): b for b in await app.store.list_breakers()}
        assert rows[("acme", "crm")].state == BreakerState.OPEN
        assert (FLEET, "crm") not in rows


async def test_a_process_reads_the_breakers_before_its_first_step(
    build: Callable[..., tuple[Tether, Crm]],
) -> None:
    operator, _ = build()
    operator.breaker("crm", failures=3, cool_down=5)
    await breakers.open_breaker(operator, "crm", by="ops")  # elsewhere: another process
    app, crm = build()
    app.breaker("crm", failures=3, cool_down=5)
    crm.up = True
    async with TestEnvironment(app, in_memory=False) as env:
        held = await app.submit("sync", "a")
        await env.run_until_idle(skip_time=False)
        assert await waiting_on_circuit(app, held.id), "its first step met the open breaker"
        assert crm.calls == []
