"""Every event type of the catalogue is written, as the catalogue says, on both backends.

`store_url` holds the events of every test to the catalogue afterwards
(tests/events_check.py); this test makes sure that check meets every type, so no entry of
the catalogue is dead and none is written only by code no test reaches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from helpers import event_where, wait_status
from tether import ApprovalFilter, Context, RetryPolicy, TaskStatus, Tether
from tether.models.events import EVENT_CATALOGUE


async def test_every_catalogued_event_type_is_written(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    gate = asyncio.Event()
    holding = asyncio.Event()

    async def hold() -> None:
        holding.set()
        await gate.wait()

    async def boom() -> None:
        raise ConnectionError("always")  # transient: retried, then failed for good

    @app.workflow("flaky")
    async def flaky(ctx: Context) -> None:
        await ctx.step("boom", boom, retry=RetryPolicy(max_attempts=2, initial_interval=0))

    @app.workflow("gated")
    async def gated(ctx: Context) -> str:
        await ctx.step("hold", hold)
        await ctx.wait_for_signal("go")  # sent while "hold" ran: task.queued, not waiting
        await ctx.approval(summary="auto", risk="low")  # decided at once by the policy
        decision = await ctx.approval(summary="look", risk="high")
        return "approved" if decision.approved else "rejected"

    @app.workflow("stuck")
    async def stuck(ctx: Context) -> None:
        await ctx.step("hold", hold)

    async with app.worker(poll_interval=0.05, grace=0.1):
        failed = await app.submit("flaky")
        assert (await failed.wait(timeout=10)).status == TaskStatus.FAILED

        gated_task = await app.submit("gated")
        await asyncio.wait_for(holding.wait(), 10)
        await app.signal(gated_task.id, "go")
        gate.set()
        await wait_status(app, gated_task.id, TaskStatus.WAITING)
        (pending,) = await app.approvals(ApprovalFilter(status="pending"))
        await app.decide(pending.id, reviewer="ana", approve=True)
        assert await gated_task.result(timeout=10) == "approved"
        rerun = await app.rerun(gated_task.id, created_by="ops")
        assert await rerun.result(timeout=10) == "approved"

        gate.clear()
        holding.clear()
        cancelled = await app.submit("stuck")
        await asyncio.wait_for(holding.wait(), 10)
        await app.cancel(cancelled.id, by="ops")
        assert (await cancelled.wait(timeout=10)).status == TaskStatus.CANCELLED

        holding.clear()
        released = await app.submit("stuck")
        await asyncio.wait_for(holding.wait(), 10)
    # The worker stopped with "stuck" still holding: it handed the task back.
    await event_where(app, released.id, lambda e: e.type == "task.released")

    seen = set()
    for handle in (failed, gated_task, rerun, cancelled, released):
        seen |= {e.type for e in await app.store.list_events(task_id=handle.id)}
    assert seen == set(EVENT_CATALOGUE)
