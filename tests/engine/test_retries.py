"""Failure classification, backoff, budgets, timeouts and deadlines: on every backend
(the manual clock of `TestEnvironment` over the test's own SQLite or PostgreSQL store)."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import timedelta

import pytest

from helpers import events_through
from tether import (
    Context,
    Permanent,
    RetryBudget,
    RetryPolicy,
    TaskStatus,
    Tether,
    Transient,
    WaitReason,
)
from tether.errors import fingerprint, is_transient
from tether.testing import TestEnvironment


class HTTPError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (TimeoutError(), True),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (HTTPError(429), True),
        (HTTPError(503), True),
        (HTTPError(500), True),
        (HTTPError(400), False),
        (HTTPError(403), False),
        (HTTPError(404), False),
        (ValueError("bad"), False),
        (PermissionError(), False),
        (Transient("later"), True),
        (Permanent("never"), False),
        (KeyError("x"), False),
    ],
)
def test_default_classification(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_user_classifier_wins() -> None:
    def mine(exc: BaseException) -> bool | None:
        return True if isinstance(exc, ValueError) else None

    assert is_transient(ValueError("quota"), [mine]) is True
    assert is_transient(KeyError("x"), [mine]) is False


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(
        max_attempts=10, initial_interval=1, backoff_coefficient=2, max_interval=10, jitter=0
    )
    assert [policy.backoff(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    jittered = RetryPolicy(initial_interval=10, jitter=0.2)
    samples = {jittered.backoff(1) for _ in range(50)}
    assert all(8 <= s <= 12 for s in samples) and len(samples) > 1


def test_fingerprint_groups_by_root_cause() -> None:
    a = fingerprint("TimeoutError", "timed out after 30.1s on shard 17", "fetch")
    b = fingerprint("TimeoutError", "timed out after 29.8s on shard 18", "fetch")
    c = fingerprint("TimeoutError", "timed out after 29.8s on shard 18", "store")
    assert a == b != c


async def test_long_backoff_releases_the_slot_and_resumes_on_time(store_url: str) -> None:
    app = Tether(store_url)
    calls: list[float] = []

    @app.workflow("flaky")
    async def flaky(ctx: Context) -> str:
        def call() -> str:
            calls.append(app.clock.now())
            if len(calls) < 3:
                raise Transient("503 from provider")
            return "ok"

        policy = RetryPolicy(max_attempts=5, initial_interval=60, jitter=0)
        return await ctx.step("call", call, retry=policy)

    async with TestEnvironment(app, in_memory=False) as env:
        handle = await app.submit("flaky")
        await env.run_until_idle(skip_time=False)
        task = await app.get(handle.id)
        assert task.status == TaskStatus.WAITING
        assert task.wait_reason == WaitReason.RETRY_BACKOFF
        assert task.run_at == pytest.approx(calls[0] + 60)
        await env.run_until_idle()  # skips time: 60 s, then 120 s
        assert await handle.result(timeout=5) == "ok"
        assert [round(b - a) for a, b in itertools.pairwise(calls)] == [60, 120]
        events = [e.type for e in await events_through(app, handle.id, "task.succeeded")]
        assert events.count("step.retrying") == 2
        assert events.count("task.waiting") == 2
        steps = await app.steps(handle.id)
        assert steps[0].attempts == 3


async def test_permanent_errors_are_not_retried(store_url: str) -> None:
    app = Tether(store_url)
    calls = Counter[str]()

    @app.workflow("strict")
    async def strict(ctx: Context) -> None:
        def validate() -> None:
            calls["validate"] += 1
            raise ValueError("missing evidence for claim 3")

        await ctx.step("validate", validate)

    async with TestEnvironment(app, in_memory=False) as env:
        handle = await app.submit("strict")
        await env.run_until_idle()
        task = await app.get(handle.id)
        assert calls["validate"] == 1
        assert task.status == TaskStatus.FAILED and task.error is not None
        assert task.error.permanent and task.error.step == "validate"
        assert task.error.fingerprint == fingerprint(
            "ValueError", "missing evidence for claim 3", "validate"
        )


async def test_exhausted_retries_fail_the_task(store_url: str) -> None:
    app = Tether(store_url)

    @app.workflow("down", retry=RetryPolicy(max_attempts=3, initial_interval=5, jitter=0))
    async def down(ctx: Context) -> None:
        await ctx.step("call", _always_down)

    async with TestEnvironment(app, in_memory=False) as env:
        handle = await app.submit("down")
        await env.run_until_idle()
        task = await app.get(handle.id)
        steps = await app.steps(handle.id)
        assert task.status == TaskStatus.FAILED and steps[0].attempts == 3
        events = await events_through(app, handle.id, "task.failed")
        assert events[-1].decision == "retries_exhausted"


async def test_workflow_can_catch_a_failed_step_and_compensate(store_url: str) -> None:
    app = Tether(store_url)

    @app.workflow("saga")
    async def saga(ctx: Context) -> str:
        await ctx.step("reserve", lambda: "reserved")
        try:
            await ctx.step("charge", _always_down, retry=RetryPolicy(max_attempts=1))
        except Exception:
            await ctx.step("release", lambda: "released")
            return "compensated"
        return "charged"

    async with TestEnvironment(app, in_memory=False) as env:
        handle = await app.submit("saga")
        await env.run_until_idle()
        assert await handle.result(timeout=1) == "compensated"


async def test_retry_budget_caps_retries_across_the_task(store_url: str) -> None:
    app = Tether(store_url)
    calls = Counter[str]()

    @app.workflow(
        "budgeted",
        retry=RetryPolicy(max_attempts=10, initial_interval=1, jitter=0),
        budget=RetryBudget(max_retries=3),
    )
    async def budgeted(ctx: Context) -> None:
        def a() -> None:
            calls["a"] += 1
            if calls["a"] < 3:
                raise Transient("x")

        await ctx.step("a", a)  # uses 2 retries
        await ctx.step("b", _always_down)  # only 1 retry left

    async with TestEnvironment(app, in_memory=False) as env:
        handle = await app.submit("budgeted")
        await env.run_until_idle()
        steps = await app.steps(handle.id)
        assert [s.attempts for s in steps] == [3, 2]
        assert (await app.get(handle.id)).status == TaskStatus.FAILED


async def test_step_timeout_is_transient_and_retried(store_url: str) -> None:
    app = Tether(store_url)
    calls = Counter[str]()

    async def slow() -> str:
        calls["slow"] += 1
        if calls["slow"] == 1:
            await asyncio.sleep(10)
        return "fast enough"

    @app.workflow("timed")
    async def timed(ctx: Context) -> str:
        policy = RetryPolicy(max_attempts=2, initial_interval=0)
        return await ctx.step("slow", slow, timeout=0.05, retry=policy)

    async with TestEnvironment(app, in_memory=False) as env:
        handle = await app.submit("timed")
        await env.run_until_idle()
        assert await handle.result(timeout=1) == "fast enough"
        assert (await app.steps(handle.id))[0].attempts == 2


async def test_deadline_fails_a_running_task(store_url: str) -> None:
    app = Tether(store_url)

    @app.workflow("slowpoke", deadline=timedelta(seconds=0.2))
    async def slowpoke(ctx: Context) -> None:
        await ctx.step("sleep", asyncio.sleep, 30)

    async with TestEnvironment(app, in_memory=False) as env:
        env.clock.set(__import__("time").time())  # the deadline timer uses real time
        handle = await app.submit("slowpoke")
        await env.run_until_idle(skip_time=False)
        task = await app.get(handle.id)
        assert task.status == TaskStatus.FAILED
        assert task.error is not None and task.error.type == "DeadlineExceeded"


async def test_deadline_already_passed_at_claim(store_url: str) -> None:
    app = Tether(store_url)

    @app.workflow("late")
    async def late(ctx: Context) -> None:
        raise AssertionError("must not run")

    async with TestEnvironment(app, in_memory=False) as env:
        handle = await app.submit("late", deadline=env.clock.now() - 1)
        await env.run_until_idle()
        task = await app.get(handle.id)
        assert task.error is not None and task.error.type == "DeadlineExceeded"


def _always_down() -> None:
    raise ConnectionError("integration is down")


async def test_transient_retry_after_replaces_the_backoff(store_url: str) -> None:
    """`Transient(retry_after=)` sets the wait before the next attempt, long (the task
    suspends until then) or short (it waits in place), whatever the policy computes."""
    app = Tether(store_url)
    calls: list[float] = []
    waits = [90.0, 0.5]

    @app.workflow("throttled")
    async def throttled(ctx: Context) -> str:
        def call() -> str:
            calls.append(app.clock.now())
            if waits:
                raise Transient("429 from provider", retry_after=waits.pop(0))
            return "ok"

        policy = RetryPolicy(max_attempts=5, initial_interval=7, jitter=0)
        return await ctx.step("call", call, retry=policy)

    async with TestEnvironment(app, in_memory=False) as env:
        handle = await app.submit("throttled")
        await env.run_until_idle(skip_time=False)
        task = await app.get(handle.id)
        assert (task.status, task.wait_reason) == (TaskStatus.WAITING, WaitReason.RETRY_BACKOFF)
        assert task.run_at == pytest.approx(calls[0] + 90)
        await env.run_until_idle()
        assert await handle.result(timeout=5) == "ok"
    assert [b - a for a, b in itertools.pairwise(calls)] == pytest.approx([90, 0.5])


async def test_non_retryable_types_fail_at_once_though_transient(store_url: str) -> None:
    app = Tether(store_url)
    calls = Counter[str]()

    class CertificateError(ConnectionError):
        """A connection error that no retry will fix."""

    policy = RetryPolicy(
        max_attempts=5, initial_interval=1, jitter=0, non_retryable=(CertificateError,)
    )

    @app.workflow("tls", retry=policy)
    async def tls(ctx: Context) -> None:
        def flaky() -> None:
            calls["flaky"] += 1
            if calls["flaky"] < 3:
                raise ConnectionResetError("reset")  # transient and retryable

        def pinned() -> None:
            calls["pinned"] += 1
            raise CertificateError("certificate pinned to another key")

        await ctx.step("flaky", flaky)
        await ctx.step("pinned", pinned)

    async with TestEnvironment(app, in_memory=False) as env:
        handle = await app.submit("tls")
        await env.run_until_idle()
        task = await app.get(handle.id)
    assert calls == Counter(flaky=3, pinned=1)
    assert task.status == TaskStatus.FAILED and task.error is not None
    assert (task.error.type, task.error.step) == ("CertificateError", "pinned")
    assert [s.attempts for s in await app.steps(handle.id)] == [3, 1]


async def test_retry_budget_max_elapsed_stops_retries_after_the_wall_time(
    store_url: str,
) -> None:
    """No retry starts once `max_elapsed` has passed since the task first started,
    counted across the suspensions of long backoffs (the task is claimed again each
    time; its first start stays)."""
    app = Tether(store_url)
    calls: list[float] = []

    @app.workflow(
        "patient",
        retry=RetryPolicy(max_attempts=10, initial_interval=60, jitter=0),
        budget=RetryBudget(max_elapsed=timedelta(seconds=100)),
    )
    async def patient(ctx: Context) -> None:
        def call() -> None:
            calls.append(app.clock.now())
            raise Transient("still down")

        await ctx.step("call", call)

    async with TestEnvironment(app, in_memory=False) as env:
        handle = await app.submit("patient")
        await env.run_until_idle()
        task = await app.get(handle.id)
        steps = await app.steps(handle.id)
    # attempts at 0 s and 60 s are within the budget; at 180 s it is spent: no 4th
    assert [round(t - calls[0]) for t in calls] == [0, 60, 180]
    assert task.status == TaskStatus.FAILED and steps[0].attempts == 3


async def test_classifiers_decide_what_is_retried_end_to_end(store_url: str) -> None:
    """`Tether(classifiers=[fn])`: a verdict of the classifier wins over the defaults, in
    both directions, and None leaves the decision to them."""

    class QuotaExceeded(Exception):
        """Unknown to Tether: permanent by default."""

    def classify(exc: BaseException) -> bool | None:
        if isinstance(exc, QuotaExceeded):
            return True
        if isinstance(exc, ConnectionRefusedError):
            return False  # transient by default; refused means misconfigured here
        return None

    app = Tether(store_url, classifiers=[classify])
    calls = Counter[str]()
    policy = RetryPolicy(max_attempts=5, initial_interval=1, jitter=0)

    @app.workflow("classified", retry=policy)
    async def classified(ctx: Context) -> str:
        def quota() -> str:
            calls["quota"] += 1
            if calls["quota"] < 3:
                raise QuotaExceeded("monthly quota")
            return "quota ok"

        def timeout() -> str:  # None from the classifier: the default (transient) holds
            calls["timeout"] += 1
            if calls["timeout"] < 2:
                raise TimeoutError("slow")
            return "timeout ok"

        def refused() -> None:
            calls["refused"] += 1
            raise ConnectionRefusedError("port 5433 refused")

        await ctx.step("quota", quota)
        await ctx.step("timeout", timeout)
        await ctx.step("refused", refused)
        return "unreachable"

    async with TestEnvironment(app, in_memory=False) as env:
        handle = await app.submit("classified")
        await env.run_until_idle()
        task = await app.get(handle.id)
        steps = await app.steps(handle.id)
    assert calls == Counter(quota=3, timeout=2, refused=1)
    assert [(s.name, s.attempts) for s in steps] == [("quota", 3), ("timeout", 2), ("refused", 1)]
    assert task.status == TaskStatus.FAILED and task.error is not None
    assert (task.error.type, task.error.permanent) == ("ConnectionRefusedError", True)
