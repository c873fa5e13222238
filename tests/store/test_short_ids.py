"""Finding tasks and approvals by a short id (a beginning or an end of the id), and the
approvals of one task: the filters the CLI resolves short ids with, on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from helpers import wait_status
from tether import ApprovalFilter, Context, TaskFilter, TaskStatus, Tether


async def test_tasks_by_the_beginning_or_the_end_of_their_id(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()

    @app.workflow("noop")
    async def noop(ctx: Context) -> None:
        return None

    mine = [h.id for h in await app.submit_many("noop", [None] * 5, tenant="t1")]
    (theirs,) = [h.id for h in await app.submit_many("noop", [None], tenant="t2")]

    async def found(short: str, tenant: str | None = "t1") -> list[str]:
        return [t.id for t in await app.list_tasks(TaskFilter(tenant=tenant, short_id=short))]

    for task_id in mine:
        assert await found(task_id[-12:]) == [task_id]  # the last group: what tables show
        assert await found(task_id) == [task_id]
    # Ids made in the same millisecond share most of their beginning: a short beginning
    # matches them all, newest first, and nothing of another tenant.
    assert await found(mine[0][:8]) == sorted(mine, reverse=True)
    assert await found(theirs[-12:]) == []
    assert await found(theirs[-12:], tenant=None) == [theirs]
    assert await found(mine[0][-12:].upper()) == [], "ids are compared as they are stored"
    assert await found(mine[0] + "0") == [], "longer than any id: no match"
    assert await found(mine[0][10:20]) == [], "the middle of an id is not a short id"


async def test_approvals_of_a_task_and_by_short_id(make_app: Callable[[], Tether]) -> None:
    app = make_app()

    @app.workflow("two_gates")
    async def two_gates(ctx: Context) -> list[str]:
        first = await ctx.approval(summary="first", risk="high")
        second = await ctx.approval(summary="second", risk="high")
        return [first.status, second.status]

    async with app.worker(poll_interval=0.05):
        a, b = await app.submit_many("two_gates", [None, None], tenant="t1", created_by="sam")
        for handle in (a, b):
            await wait_status(app, handle.id, TaskStatus.WAITING)
        (of_a,) = await app.approvals(ApprovalFilter(tenant="t1", task_id=a.id))
        assert of_a.task_id == a.id and of_a.request["summary"] == "first"
        assert {x.task_id for x in await app.approvals(ApprovalFilter(tenant="t1"))} == {
            a.id,
            b.id,
        }
        assert await app.approvals(ApprovalFilter(tenant="t2", task_id=a.id)) == []
        by_short = await app.approvals(ApprovalFilter(tenant="t1", short_id=of_a.id[-12:]))
        assert [x.id for x in by_short] == [of_a.id]
        await app.decide(of_a.id, reviewer="ann", approve=True, reason="ok", tenant="t1")
        pending = ApprovalFilter(tenant="t1", task_id=a.id, status="pending")
        deadline = asyncio.get_running_loop().time() + 10
        while [x.request["summary"] for x in await app.approvals(pending)] != ["second"]:
            assert asyncio.get_running_loop().time() < deadline, "no second approval"
            await asyncio.sleep(0.02)
        every = await app.approvals(ApprovalFilter(tenant="t1", task_id=a.id))
        assert [x.status for x in every] == ["pending", "approved"], "newest first"
