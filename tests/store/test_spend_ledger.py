"""The spend ledger's contract (`SpendStore`, ADR 92), on both backends: a reservation
books all of a step's lines or none; many at once from separate connections never book
past a limit; a dead task's reservation is released and a settlement of an old attempt
releases nothing newer; a budget approval is opened once per line, its decision raises
the line and wakes (or, for a task still suspending, pokes) the tasks waiting for it;
purging a task purges its line but keeps the day's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tether import Context, Cost, TaskStatus, Tether, WaitReason
from tether.ids import new_id
from tether.models import Approval
from tether.models.budgets import to_nanos
from tether.store.base import Suspend
from tether.store.spend import HoldOutcome, LineLimit, SpendClaim, SpendReport

DAY = "2026-12-04"


def build(make_app: Callable[[], Tether]) -> Tether:
    app = make_app()

    @app.workflow("work")
    async def work(ctx: Context) -> None:
        return None

    return app


async def running(app: Tether, n: int) -> list[str]:
    """`n` tasks of `work`, claimed (running, attempt 1) by worker `w`."""
    await app.submit_batch([app.new_task("work") for _ in range(n)])
    now = app.clock.now()
    claimed = await app.store.claim("w", ["default"], n, now, now + 600, [("work", 1)])
    return [c.task.id for c in claimed]


def claim(
    task_id: str,
    usd: float,
    *,
    seq: int = 1,
    attempt: int = 1,
    task: float | None = None,
    tenant: float | None = None,
) -> SpendClaim:
    limits = {}
    if task is not None:
        limits["task"] = LineLimit(to_nanos(task))
    if tenant is not None:
        limits["tenant"] = LineLimit(to_nanos(tenant))
    return SpendClaim(task_id, seq, attempt, "default", "work", DAY, Cost(usd=usd), limits)  # type: ignore[arg-type]


async def test_a_reservation_books_every_line_or_none(make_app: Callable[[], Tether]) -> None:
    app = build(make_app)
    await app.open()
    (tid,) = await running(app, 1)
    store, now = app.store, app.clock.now()
    assert await store.reserve(claim(tid, 0.3, tenant=0.5), now) is None
    # The task's line has room (no limit); the tenant's day has 0.2 left: nothing books.
    short = await store.reserve(claim(tid, 0.3, seq=2, tenant=0.5), now)
    assert short is not None and short.scope == "tenant"
    assert short.reserved == Cost(usd=0.3)
    task_line = await store.task_spend(tid, "default")
    assert task_line is not None and task_line.reserved == Cost(usd=0.3)  # seq 2 rolled back
    # Asking again for the same step replaces its reservation instead of adding to it.
    assert await store.reserve(claim(tid, 0.4, tenant=0.5), now) is None
    day = await store.day_spend("default", DAY)
    assert day.total.reserved == Cost(usd=0.4)
    assert day.workflows["work"].reserved == Cost(usd=0.4)
    await store.settle(SpendReport(tid, 1, 1, "default", "work", "1999-01-01", Cost(0.35, 7)), now)
    day = await store.day_spend("default", DAY)  # booked on the reservation's day
    assert (day.total.spent, day.total.reserved) == (Cost(usd=0.35, tokens=7), Cost())
    assert day.total.limit_usd == 0.5


async def test_concurrent_reservations_never_book_past_the_limit(
    make_app: Callable[[], Tether],
) -> None:
    app = build(make_app)
    await app.open()
    ids = await running(app, 40)
    now = app.clock.now()
    results = await asyncio.gather(
        *(app.store.reserve(claim(t, 0.05, tenant=1.0), now) for t in ids)
    )
    assert sum(1 for r in results if r is None) == 20
    day = await app.store.day_spend("default", DAY)
    assert day.total.reserved == Cost(usd=1.0)


async def test_dead_reservations_are_released_and_old_attempts_settle_only_spend(
    make_app: Callable[[], Tether],
) -> None:
    app = build(make_app)
    await app.open()
    alive, dead = await running(app, 2)
    store, now = app.store, app.clock.now()
    assert await store.reserve(claim(alive, 0.4, tenant=1.0), now) is None
    assert await store.reserve(claim(dead, 0.4, attempt=1, tenant=1.0), now) is None
    # `dead`'s worker vanished: its lease ran out, another claim took it (attempt 2).
    later = now + 601
    assert alive in await store.heartbeat("w", [alive], now + 500, later + 600)
    (again,) = await store.claim("w2", ["default"], 5, later, later + 600, [("work", 1)])
    assert again.task.id == dead and again.task.attempt == 2
    assert await store.release_dead("default", DAY, None, later) == 1  # only the dead one
    day = await store.day_spend("default", DAY)
    assert day.total.reserved == Cost(usd=0.4)
    assert await store.reserve(claim(dead, 0.5, attempt=2, tenant=1.0), later) is None
    # The old attempt's late report books its spend but frees nothing of attempt 2's.
    await store.settle(SpendReport(dead, 1, 1, "default", "work", DAY, Cost(0.1)), later)
    day = await store.day_spend("default", DAY)
    assert (day.total.spent, day.total.reserved) == (Cost(usd=0.1), Cost(usd=0.9))


def raise_request(task_id: str, scope: str, subject: str, day: str) -> Approval:
    budget = {"scope": scope, "subject": subject, "day": day, "proposed": {"usd": 2.0}}
    return Approval(
        id=new_id(),
        task_id=task_id,
        tenant="default",
        workflow="work",
        seq=0,
        status="pending",
        risk="budget",
        request={"summary": "raise", "budget": budget},
        required=1,
        submitter=None,
        created_at=0.0,
    )


async def test_one_approval_per_line_and_its_decision_wakes_or_pokes_the_waiters(
    make_app: Callable[[], Tether],
) -> None:
    app = build(make_app)
    await app.open()
    first, second = await running(app, 2)
    store, now = app.store, app.clock.now()
    assert await store.reserve(claim(first, 1.0, tenant=1.0), now) is None
    asks = [claim(t, 0.5, seq=2, tenant=1.0) for t in (first, second)]
    one = await store.hold_for_raise(
        asks[0], "tenant", raise_request(first, "tenant", "", DAY), now
    )
    two = await store.hold_for_raise(
        asks[1], "tenant", raise_request(second, "tenant", "", DAY), now
    )
    assert one.outcome == two.outcome == HoldOutcome.HOLD
    assert one.approval is not None and two.approval is not None
    assert two.approval.id == one.approval.id, "the line's pending approval is shared"
    assert one.approval.seq == -1
    # `first` suspends before the decision; `second` is still running when it comes.
    assert await store.commit([Suspend(first, 1, WaitReason.BUDGET, now + 900)], "w", now) == [True]
    await app.decide(one.approval.id, reviewer="ops", approve=True, changes={"usd": 3.0})
    assert (await app.get(first)).status == TaskStatus.QUEUED  # woken by the decision
    assert await store.commit([Suspend(second, 1, WaitReason.BUDGET, now + 900)], "w", now) == [
        True
    ]
    assert (await app.get(second)).status == TaskStatus.QUEUED  # poked: not parked
    day = await store.day_spend("default", DAY)
    assert day.total.limit_usd == 3.0
    assert day.total.approval_id == one.approval.id
    # Now the line covers it, and another ask is told to try again.
    fits = await store.hold_for_raise(
        asks[1], "tenant", raise_request(second, "tenant", "", DAY), now
    )
    assert fits.outcome in (HoldOutcome.RETRY, HoldOutcome.LOST)


async def test_a_refused_raise_answers_fail_and_the_next_exhaustion_asks_anew(
    make_app: Callable[[], Tether],
) -> None:
    app = build(make_app)
    await app.open()
    (tid,) = await running(app, 1)
    store, now = app.store, app.clock.now()
    assert await store.reserve(claim(tid, 1.0, task=1.0), now) is None
    ask = claim(tid, 0.5, seq=2, task=1.0)
    held = await store.hold_for_raise(ask, "task", raise_request(tid, "task", tid, ""), now)
    assert held.approval is not None
    await app.decide(held.approval.id, reviewer="ops", approve=False)
    refused = await store.hold_for_raise(ask, "task", raise_request(tid, "task", tid, ""), now)
    assert refused.outcome == HoldOutcome.FAIL
    assert refused.approval is not None and refused.approval.id == held.approval.id


async def test_purging_a_task_purges_its_line_and_keeps_the_day(
    make_app: Callable[[], Tether],
) -> None:
    app = build(make_app)
    async with app.worker(concurrency=2):
        handle = await app.submit("work")
        await handle.result(timeout=10)
    store, now = app.store, app.clock.now()
    await store.settle(SpendReport(handle.id, 1, 1, "default", "work", DAY, Cost(0.2)), now)
    assert await store.task_spend(handle.id, "default") is not None
    assert await store.purge(now + 1, 100, now + 1) == 1
    assert await store.task_spend(handle.id, "default") is None
    assert (await store.day_spend("default", DAY)).total.spent == Cost(usd=0.2)
