"""Durable timers, signals and approvals: waiting costs nothing and survives restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from helpers import wait_status
from tether import Context, InvalidTransition, TaskStatus, Tether, WaitReason
from tether.engine.approvals import Requirement, RiskPolicy
from tether.errors import ApprovalClosed
from tether.store.hub import Hub
from tether.testing import TestEnvironment


async def test_sleep_waits_without_a_slot_and_fires_on_time() -> None:
    app = Tether("sqlite://:memory:")

    @app.workflow("nap")
    async def nap(ctx: Context) -> float:
        before = ctx.now()
        await ctx.sleep(timedelta(hours=6))
        return (ctx.now() - before).total_seconds()

    async with TestEnvironment(app) as env:
        handle = await app.submit("nap")
        await env.run_until_idle(skip_time=False)
        task = await app.get(handle.id)
        assert task.status == TaskStatus.WAITING and task.wait_reason == WaitReason.TIMER
        assert env.worker is not None and env.worker.active == 0
        env.clock.advance(6 * 3600 - 1)
        await env.run_until_idle(skip_time=False)
        assert (await app.get(handle.id)).status == TaskStatus.WAITING
        env.clock.advance(1)
        await env.run_until_idle(skip_time=False)
        assert await handle.result(timeout=1) == pytest.approx(6 * 3600)


async def test_signals_sent_early_are_kept_in_order() -> None:
    app = Tether("sqlite://:memory:")

    @app.workflow("inbox")
    async def inbox(ctx: Context) -> list[Any]:
        await ctx.sleep(10)
        return [await ctx.wait_for_signal("msg") for _ in range(3)]

    async with TestEnvironment(app) as env:
        handle = await app.submit("inbox")
        for n in range(3):  # all arrive before the workflow waits for them
            await app.signal(handle.id, "msg", {"n": n})
        await app.signal(handle.id, "other", "ignored")
        await env.run_until_idle()
        assert await handle.result(timeout=1) == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_signal_timeout_raises_timeout_error() -> None:
    app = Tether("sqlite://:memory:")

    @app.workflow("patient")
    async def patient(ctx: Context) -> str:
        try:
            await ctx.wait_for_signal("reply", timeout=timedelta(days=2))
        except TimeoutError:
            return "gave up"
        return "got it"

    async with TestEnvironment(app) as env:
        handle = await app.submit("patient")
        await env.run_until_idle()
        assert await handle.result(timeout=1) == "gave up"


async def test_waiting_survives_worker_restarts(make_app: Callable[[], Tether]) -> None:
    app = make_app()

    @app.workflow("relay")
    async def relay(ctx: Context) -> Any:
        first = await ctx.step("prepare", lambda: "prepared")
        payload = await ctx.wait_for_signal("go")
        await ctx.sleep(0.2)
        return [first, payload]

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("relay")
        await wait_status(app, handle.id, TaskStatus.WAITING)
    # every worker is gone; the signal arrives while nobody runs
    await app.signal(handle.id, "go", 42)
    restarted = make_app()
    restarted.workflow("relay")(relay)
    async with restarted.worker(poll_interval=0.05):
        assert await restarted.handle(handle.id).result(timeout=10) == ["prepared", 42]


async def test_many_waiting_tasks_hold_no_slots(make_app: Callable[[], Tether]) -> None:
    app = make_app()

    @app.workflow("wait")
    async def wait(ctx: Context) -> None:
        await ctx.wait_for_signal("never")

    @app.workflow("quick")
    async def quick(ctx: Context, n: int) -> int:
        return await ctx.step("n", lambda: n)

    async with app.worker(concurrency=10, poll_interval=0.05) as worker:
        waiting = await app.submit_many("wait", [None] * 200)
        quick_ones = await app.submit_many("quick", list(range(50)))
        results = await asyncio.gather(*(h.result(timeout=20) for h in quick_ones))
        assert results == list(range(50))
        for h in waiting:
            await wait_status(app, h.id, TaskStatus.WAITING)
        # every waiting task has released its slot: nothing runs any more
        for _ in range(1000):  # up to 10 s
            if worker.active == 0:
                break
            await asyncio.sleep(0.01)
        assert worker.active == 0


async def test_approval_flow_with_risk_policy() -> None:
    app = Tether("sqlite://:memory:")
    app.policies.set(
        RiskPolicy(levels={"low": Requirement.AUTO, "critical": Requirement.TWO}),
        workflow="publish",
    )

    @app.workflow("publish")
    async def publish(ctx: Context, draft: str) -> dict[str, Any]:
        low = await ctx.approval(summary="fix typo", risk="low")
        big = await ctx.approval(
            summary=f"publish {draft}",
            risk="critical",
            evidence=["source A"],
            impact="public",
            rollback="unpublish",
            name="publish-approval",
        )
        return {
            "low": [low.approved, low.resolution],
            "big": [big.approved, big.reviewers, big.changes],
        }

    async with TestEnvironment(app) as env:
        handle = await app.submit("publish", {"draft": "post"}, created_by="alice")
        await env.run_until_idle(skip_time=False)
        task = await app.get(handle.id)
        assert task.wait_reason == WaitReason.APPROVAL
        (pending,) = await app.store.list_approvals(_pending())
        assert pending.required == 2 and pending.request["rollback"] == "unpublish"
        with pytest.raises(InvalidTransition, match="submitter"):
            await app.decide(pending.id, reviewer="alice", approve=True)
        await app.decide(pending.id, reviewer="bob", approve=True, reason="ok")
        with pytest.raises(InvalidTransition, match="already"):
            await app.decide(pending.id, reviewer="bob", approve=True)
        await env.run_until_idle(skip_time=False)
        assert (await app.get(handle.id)).status == TaskStatus.WAITING
        await app.decide(pending.id, reviewer="carol", approve=True, changes={"title": "Better"})
        await env.run_until_idle(skip_time=False)
        assert await handle.result(timeout=1) == {
            "low": [True, "auto"],
            "big": [True, ["bob", "carol"], {"title": "Better"}],
        }
        with pytest.raises(ApprovalClosed) as closed:
            await app.decide(pending.id, reviewer="dave", approve=False)
        assert closed.value.approval.status == "approved"


async def test_approval_timeout_and_a_racing_decision_have_one_outcome() -> None:
    app = Tether("sqlite://:memory:")

    @app.workflow("gate")
    async def gate(ctx: Context) -> str:
        decision = await ctx.approval(summary="send", risk="high", timeout=3600)
        return decision.status + ":" + decision.resolution

    async with TestEnvironment(app) as env:
        handle = await app.submit("gate")
        await env.run_until_idle(skip_time=False)
        (pending,) = await app.store.list_approvals(_pending())
        env.clock.advance(3600)
        # the reviewer is late: the timeout wins, the decision is refused with it
        with pytest.raises(ApprovalClosed) as late:
            await app.decide(pending.id, reviewer="bob", approve=True)
        assert late.value.approval.status == "rejected"
        assert late.value.approval.resolution == "timeout"
        await env.run_until_idle()
        assert await handle.result(timeout=1) == "rejected:timeout"


def _pending() -> Any:
    from tether.models import ApprovalFilter

    return ApprovalFilter(status="pending")


async def test_short_timers_fire_promptly_at_idle(make_app: Callable[[], Tether]) -> None:
    """Real clock, real worker: a 0.3 s durable sleep resumes well within a second."""
    app = make_app()
    woke: list[float] = []

    @app.workflow("blink")
    async def blink(ctx: Context) -> None:
        await ctx.sleep(0.3)
        woke.append(app.clock.now())

    async with app.worker(poll_interval=5.0):  # polling alone would be far too late
        handle = await app.submit("blink")
        start = app.clock.now()
        await handle.result(timeout=10)
    assert 0.3 <= woke[-1] - start < 1.0


async def test_a_branch_writing_its_wait_is_not_left_out_of_the_suspension() -> None:
    """gather(approval with a timeout, signal): the approval's timer must be kept."""
    app = Tether("sqlite://:memory:")

    @app.workflow("both")
    async def both(ctx: Context) -> list[Any]:
        decision, go = await asyncio.gather(
            ctx.approval(summary="x", risk="high", timeout=60),
            ctx.wait_for_signal("go"),
        )
        return [decision.status, decision.resolution, go]

    async with TestEnvironment(app) as env:
        handle = await app.submit("both")
        await env.run_until_idle(skip_time=False)
        task = await app.get(handle.id)
        assert task.status == TaskStatus.WAITING and task.run_at is not None
        await env.run_until_idle()  # skips to the approval's timeout
        (approval,) = await app.store.list_approvals(_pending().__class__())
        assert (approval.status, approval.resolution) == ("rejected", "timeout")
        await app.signal(handle.id, "go", 7)
        await env.run_until_idle()
        assert await handle.result(timeout=1) == ["rejected", "timeout", 7]


async def test_a_signal_wakes_a_task_whose_wait_reason_is_an_approval() -> None:
    app = Tether("sqlite://:memory:")

    @app.workflow("both")
    async def both(ctx: Context) -> Any:
        _, go = await asyncio.gather(
            ctx.approval(summary="x", risk="high"), ctx.wait_for_signal("go")
        )
        return go

    async with TestEnvironment(app) as env:
        handle = await app.submit("both")
        await env.run_until_idle()
        assert (await app.get(handle.id)).wait_reason == WaitReason.APPROVAL
        await app.signal(handle.id, "go", "now")
        await env.run_until_idle()
        signal_step = [s for s in await app.steps(handle.id) if s.name == "go"]
        assert signal_step and signal_step[0].status == "succeeded"
        (pending,) = await app.store.list_approvals(_pending())
        await app.decide(pending.id, reviewer="bob", approve=True, reason="ok")
        await env.run_until_idle()
        assert await handle.result(timeout=1) == "now"


async def test_a_waiting_task_still_ends_at_its_deadline(store_url: str) -> None:
    app = Tether(store_url)

    @app.workflow("forever", deadline=timedelta(minutes=1))
    async def forever(ctx: Context) -> None:
        await ctx.wait_for_signal("never")

    async with TestEnvironment(app, in_memory=False) as env:
        handle = await app.submit("forever")
        await env.run_until_idle()
        task = await app.get(handle.id)
        assert task.status == TaskStatus.FAILED
        assert task.error is not None and task.error.type == "DeadlineExceeded"


async def test_cancelling_a_task_closes_its_pending_approvals() -> None:
    app = Tether("sqlite://:memory:")

    @app.workflow("gate")
    async def gate(ctx: Context) -> None:
        await ctx.approval(summary="send", risk="high")

    async with TestEnvironment(app) as env:
        handle = await app.submit("gate")
        await env.run_until_idle()
        (pending,) = await app.store.list_approvals(_pending())
        await app.cancel(handle.id)
        assert await app.store.list_approvals(_pending()) == []
        with pytest.raises(ApprovalClosed) as closed:
            await app.decide(pending.id, reviewer="bob", approve=True)
        assert closed.value.approval.resolution == "cancelled"


async def test_sqlite_processes_wake_each_other_without_polling(tmp_path: Any) -> None:
    """Two stores on one file stand for two processes: a submit in one starts the task
    in the other's worker, and its completion wakes the submitter's waiter, both far
    faster than the (here deliberately slow) polling."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    worker_side, api_side = Tether(url), Tether(url)
    for app in (worker_side, api_side):

        @app.workflow("quick")
        async def quick(ctx: Context) -> str:
            return "done"

    await api_side.open()
    loop = asyncio.get_running_loop()
    try:
        async with worker_side.worker(poll_interval=30.0):
            await asyncio.sleep(0.1)  # the worker is idle, waiting for work
            start = loop.time()
            handle = await api_side.submit("quick")
            assert await handle.result(timeout=10) == "done"
            elapsed = loop.time() - start
    finally:
        await worker_side.close()
        await api_side.close()
    assert elapsed < 1.0, f"cross-process round trip took {elapsed:.2f}s"


async def test_a_refresh_wakes_waiters_only_for_rows_they_have_not_read() -> None:
    """`Hub.saw` / `Hub.is_news` (ADR 57): the row a waiter read is not news; a newer row
    is, even when another reader of the same process has read it first."""
    hub = Hub()
    hub.saw("t", 1.0)  # nobody waits yet: nothing is kept
    assert hub.is_news("t", 1.0)
    fut = hub.wait_task("t")
    hub.saw("t", 1.0)  # the waiter's own read
    assert not hub.is_news("t", 1.0)
    hub.saw("t", 2.0)  # someone else read the task after it changed
    assert hub.is_news("t", 2.0)
    hub.task_changed("t", "succeeded")
    assert fut.result().status == "succeeded"
    fut = hub.wait_task("t")  # a new wait starts from its own read
    hub.saw("t", 2.0)
    assert not hub.is_news("t", 2.0)
    hub.forget("t", fut)
    assert hub.is_news("t", 2.0)
