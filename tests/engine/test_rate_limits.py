"""Rate limits as a step gate (ADR 90), on both backends with the manual clock of
`TestEnvironment`: a step over its integration's limit waits (`waiting`, reason
`rate_limit`, no slot) until its bucket allows, then runs; the steps held on one bucket
are lined up a take apart; per-tenant buckets do not hold other tenants; a model
call's reported tokens are debited, so the next call waits for the debt to be paid."""

from __future__ import annotations

import pytest

from tether import Context, RetryPolicy, TaskStatus, Tether, Transient, WaitReason, current_step
from tether.models.buckets import SHARED, BucketKey, BucketKind
from tether.testing import TestEnvironment


def _crm_app(store_url: str, runs: list[tuple[str, float]]) -> Tether:
    app = Tether(store_url)

    @app.step(integration="crm")
    def write(tag: str) -> str:
        runs.append((tag, app.clock.now()))
        return tag

    @app.workflow("sync")
    async def sync(ctx: Context, tag: str) -> str:
        await ctx.step("local", lambda: 1)  # no integration: never held
        return await write(tag)

    return app


async def test_steps_over_the_limit_wait_without_a_slot_then_run_at_its_rate(
    store_url: str,
) -> None:
    runs: list[tuple[str, float]] = []
    app = _crm_app(store_url, runs)
    app.rate_limit("crm", requests_per_minute=60)  # one a second, a burst of one
    async with TestEnvironment(app, in_memory=False) as env:
        start = app.clock.now()
        handles = [await app.submit("sync", {"tag": t}) for t in "abc"]
        await env.run_until_idle(skip_time=False)
        tasks = [await app.get(h.id) for h in handles]
        assert [t.status for t in tasks].count(TaskStatus.SUCCEEDED) == 1
        held = [t for t in tasks if t.status == TaskStatus.WAITING]
        assert [t.wait_reason for t in held] == [WaitReason.RATE_LIMIT] * 2
        # Lined up one take apart, not all at the instant the bucket allows one.
        assert sorted(t.run_at or 0 for t in held) == [
            pytest.approx(start + 1),
            pytest.approx(start + 2),
        ]
        assert env.worker is not None and env.worker.active == 0  # no slot held
        await env.run_until_idle()
        assert [await h.result(timeout=5) for h in handles] == ["a", "b", "c"]
        (bucket,) = await app.store.list_buckets(None)
        assert bucket.key == BucketKey(BucketKind.REQUESTS, "crm", SHARED)
    times = sorted(at for _, at in runs)
    assert len(times) == 3
    assert times[1] - times[0] >= 1 - 1e-6 and times[2] - times[1] >= 1 - 1e-6


async def test_per_tenant_buckets_hold_only_their_tenant(store_url: str) -> None:
    runs: list[tuple[str, float]] = []
    app = _crm_app(store_url, runs)
    app.rate_limit("crm", requests_per_minute=60, per_tenant=True)
    app.rate_limit("crm", requests_per_minute=120, burst_seconds=1.5, tenant="big")
    async with TestEnvironment(app, in_memory=False) as env:
        handles = {
            (tenant, i): await app.submit("sync", {"tag": f"{tenant}{i}"}, tenant=tenant)
            for tenant in ("a", "b", "big")
            for i in range(3)
        }
        await env.run_until_idle(skip_time=False)
        status = {k: (await app.get(h.id)).status for k, h in handles.items()}
        ran = sorted(k for k, s in status.items() if s == TaskStatus.SUCCEEDED)
        # One each for a and b (a burst of one), three for big (two a second, 1.5 s).
        assert [t for t, _ in ran] == ["a", "b", "big", "big", "big"]
        await env.run_until_idle()
        for h in handles.values():
            await h.result(timeout=5)
        tenants = sorted(s.key.tenant for s in await app.store.list_buckets(None))
        assert tenants == ["a", "b", "big"]
        assert [s.key.tenant for s in await app.store.list_buckets("a")] == ["a"]


async def test_a_model_calls_tokens_are_debited_and_the_next_call_waits_for_the_debt(
    store_url: str,
) -> None:
    app = Tether(store_url)
    # 600 tokens a minute: 10 a second, a bucket of 100 (ten seconds).
    app.rate_limit("openai", tokens_per_minute=600, burst_seconds=10)
    calls: list[float] = []

    @app.step(integration="openai")
    def ask(tokens: int) -> int:
        calls.append(app.clock.now())
        current_step().annotate(model_call={"input_tokens": tokens - 50, "output_tokens": 50})
        return tokens

    @app.workflow("agent")
    async def agent(ctx: Context) -> list[int]:
        return [await ask(300), await ask(50)]

    async with TestEnvironment(app, in_memory=False) as env:
        start = app.clock.now()
        handle = await app.submit("agent")
        await env.run_until_idle(skip_time=False)
        task = await app.get(handle.id)
        assert task.status == TaskStatus.WAITING and task.wait_reason == WaitReason.RATE_LIMIT
        # 300 used of 100: 200 in debt; the next call's deposit is what calls use on
        # average (300, capped at the bucket: 100), so it waits 30 s at 10 a second.
        assert task.run_at == pytest.approx(start + 30)
        await env.run_until_idle()
        assert await handle.result(timeout=5) == [300, 50]
        (bucket,) = await app.store.list_buckets(None)
    assert calls[1] - calls[0] == pytest.approx(30)
    # The second call's deposit was 300 and it used 50: credited back 250 of them.
    assert bucket.available(calls[1]) == pytest.approx(100 - 50)


async def test_a_deposit_is_credited_back_when_the_call_reports_nothing(
    store_url: str,
) -> None:
    app = Tether(store_url)
    app.rate_limit("openai", tokens_per_minute=6000, tokens_per_call=400)  # 100/s, 100
    attempts: list[float] = []

    @app.step(integration="openai", retry=RetryPolicy(max_attempts=2, initial_interval=0.1))
    def ask() -> str:
        attempts.append(app.clock.now())
        if len(attempts) == 1:
            raise Transient("connection reset")  # never reached the provider
        return "ok"

    @app.workflow("agent")
    async def agent(ctx: Context) -> str:
        return await ask()

    async with TestEnvironment(app, in_memory=False) as env:
        handle = await app.submit("agent")
        await env.run_until_idle()
        assert await handle.result(timeout=5) == "ok"
        (bucket,) = await app.store.list_buckets(None)
        # Each attempt's deposit (400, a full bucket's worth) came back: it is full.
        assert bucket.available(app.clock.now()) == pytest.approx(100)
    # The second attempt did not wait for the first one's deposit to be paid off.
    assert attempts[1] - attempts[0] < 1


async def test_a_store_that_fails_holds_the_step_briefly(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[tuple[str, float]] = []
    app = _crm_app(store_url, runs)
    app.rate_limit("crm", requests_per_minute=60)
    async with TestEnvironment(app, in_memory=False) as env:
        real = app.store.take_from_buckets

        async def broken(*args: object) -> object:
            raise OSError("database gone")

        monkeypatch.setattr(app.store, "take_from_buckets", broken)
        start = app.clock.now()
        handle = await app.submit("sync", {"tag": "a"})
        await env.run_until_idle(skip_time=False)
        task = await app.get(handle.id)
        assert (task.status, task.wait_reason) == (TaskStatus.WAITING, WaitReason.RATE_LIMIT)
        assert task.run_at == pytest.approx(start + 1)  # asked again in a second
        monkeypatch.setattr(app.store, "take_from_buckets", real)
        await env.run_until_idle()
        assert await handle.result(timeout=5) == "a"
    assert runs == [("a", pytest.approx(start + 1))]
