"""Cancellation, idempotency, leases, fencing and terminal immutability."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from helpers import all_events, event_where, wait_status
from tether import (
    Context,
    IdempotencyConflict,
    InvalidTransition,
    Task,
    TaskStatus,
    Tether,
    load_settings,
)
from tether.models import StepKind, StepRecord, StepStatus
from tether.store.base import Finish, StepWrite


async def test_cancel_a_queued_task(make_app: Callable[[], Tether]) -> None:
    app = make_app()

    @app.workflow("never")
    async def never(ctx: Context) -> None:
        raise AssertionError("a cancelled task must not run")

    handle = await app.submit("never")
    task = await app.cancel(handle.id, by="ops")
    assert task.status == TaskStatus.CANCELLED
    async with app.worker(poll_interval=0.05):
        await asyncio.sleep(0.1)  # give a wrongly-claimable task the chance to run
    assert (await app.get(handle.id)).status == TaskStatus.CANCELLED
    with pytest.raises(InvalidTransition):
        await app.cancel(handle.id)


async def test_cancel_a_waiting_task(make_app: Callable[[], Tether]) -> None:
    app = make_app()

    @app.workflow("waits")
    async def waits(ctx: Context) -> None:
        await ctx.wait_for_signal("never")

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("waits")
        await wait_status(app, handle.id, TaskStatus.WAITING)
        task = await app.cancel(handle.id)
    assert task.status == TaskStatus.CANCELLED
    with pytest.raises(InvalidTransition):
        await app.signal(handle.id, "never")


async def test_cancel_a_running_task_cancels_its_step(make_app: Callable[[], Tether]) -> None:
    app = make_app()
    started = asyncio.Event()
    saw_cancel = asyncio.Event()

    async def long_step() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            saw_cancel.set()
            raise

    @app.workflow("long")
    async def long(ctx: Context) -> None:
        await ctx.step("long", long_step)

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("long")
        await asyncio.wait_for(started.wait(), 10)
        requested = await app.cancel(handle.id)
        assert requested.status == TaskStatus.RUNNING and requested.cancel_requested
        task = await handle.wait(timeout=10)
    assert task.status == TaskStatus.CANCELLED
    assert saw_cancel.is_set()


async def test_cancel_reaches_a_running_task_through_the_heartbeat(
    make_app: Callable[[], Tether],
) -> None:
    """Cancellation requested by another process arrives with the next heartbeat."""
    app = make_app()
    other = make_app()  # stands for an API server: no local worker to poke
    started = asyncio.Event()

    @app.workflow("long")
    async def long(ctx: Context) -> None:
        started.set()
        await ctx.step("sleep", asyncio.sleep, 60)

    async with app.worker(poll_interval=0.05, lease_ttl=0.6):
        handle = await app.submit("long")
        await asyncio.wait_for(started.wait(), 10)
        await other.cancel(handle.id)
        task = await handle.wait(timeout=10)
    assert task.status == TaskStatus.CANCELLED


async def test_idempotent_submission_under_concurrent_submits(store_url: str) -> None:
    """20 threads, each with its own app and store, one key: one task."""
    setup = Tether(store_url)

    @setup.workflow("pay")
    async def pay(ctx: Context, amount: int) -> int:
        return amount

    await setup.open()  # create the schema once
    barrier = threading.Barrier(20)
    ids: list[str] = []
    errors: list[BaseException] = []

    def submit() -> None:
        async def go() -> None:
            app = Tether(store_url)
            app.workflow("pay")(pay)
            barrier.wait()
            try:
                handle = await app.submit("pay", {"amount": 5}, idempotency_key="order-1")
                ids.append(handle.id)
            finally:
                await app.close()

        try:
            asyncio.run(go())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(20)]
    for t in threads:
        t.start()
    await asyncio.gather(*(asyncio.to_thread(t.join) for t in threads))
    assert errors == []
    assert len(ids) == 20 and len(set(ids)) == 1

    with pytest.raises(IdempotencyConflict):
        await setup.submit("pay", {"amount": 6}, idempotency_key="order-1")
    again = await setup.submit("pay", {"amount": 5}, idempotency_key="order-1")
    assert again.id == ids[0] and not again.created
    other_tenant = await setup.submit(
        "pay", {"amount": 6}, idempotency_key="order-1", tenant="acme"
    )
    assert other_tenant.id != ids[0], "keys are scoped to the tenant"
    await setup.close()


async def test_idempotency_key_expires_after_its_retention_window(
    make_app: Callable[[], Tether],
) -> None:
    from tether.testing import ManualClock

    app = make_app()
    app.settings = load_settings({"database_url": "sqlite://:memory:", "idempotency_ttl": 60})
    clock = ManualClock()
    app.clock = clock

    @app.workflow("w")
    async def w(ctx: Context, n: int) -> int:
        return n

    first = await app.submit("w", 1, idempotency_key="k")
    clock.advance(59)
    assert (await app.submit("w", 1, idempotency_key="k")).id == first.id
    clock.advance(2)
    fresh = await app.submit("w", 2, idempotency_key="k")
    assert fresh.id != first.id and fresh.created


async def test_expired_lease_is_recovered_and_the_old_holder_is_fenced(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    runs: list[str] = []

    @app.workflow("work")
    async def work(ctx: Context) -> str:
        await ctx.step("one", lambda: runs.append("one"))
        return "done"

    handle = await app.submit("work")
    await app.open()
    now = app.clock.now()
    # A worker claims the task and dies: nobody renews its lease.
    (dead,) = await app.store.claim("dead-worker", ["default"], 10, now, now + 0.3)
    assert dead.task.attempt == 1
    async with app.worker(poll_interval=0.05):
        assert await handle.result(timeout=10) == "done"
    assert runs == ["one"]
    takeover = await event_where(
        app, handle.id, lambda e: e.type == "task.started" and e.attempt == 2
    )
    assert takeover.decision == "lease_expired"
    assert takeover.prior_status == "running"
    # The dead worker wakes up and tries to write: fenced off, nothing changes.
    late = StepRecord(handle.id, 1, "one", StepKind.STEP, StepStatus.SUCCEEDED, result=99)
    assert await app.store.commit(
        [StepWrite(handle.id, 1, late), Finish(handle.id, 1, TaskStatus.FAILED)],
        "dead-worker",
        app.clock.now(),
    ) == [False, False]
    task = await app.get(handle.id)
    assert task.status == TaskStatus.SUCCEEDED and task.result == "done"
    assert (await app.steps(handle.id))[0].result is None


async def test_terminal_states_are_immutable_in_the_store(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()

    @app.workflow("w")
    async def w(ctx: Context) -> int:
        return 1

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("w")
        await handle.result(timeout=10)

    store = app.store

    async def sneak(conn: object) -> int:
        return await conn.execute(  # type: ignore[attr-defined,no-any-return]
            "UPDATE tasks SET status = 'queued' WHERE id = %s", (handle.id,)
        )

    with pytest.raises(Exception, match="terminal"):
        await store._run(sneak)  # type: ignore[attr-defined]

    async def sneak_step(conn: object) -> int:
        return await conn.execute(  # type: ignore[attr-defined,no-any-return]
            "INSERT INTO steps (task_id, seq, name, kind, status, attempts) "
            "VALUES (%s, 99, 'x', 'step', 'succeeded', 1)",
            (handle.id,),
        )

    with pytest.raises(Exception, match="terminal"):
        await store._run(sneak_step)  # type: ignore[attr-defined]

    async def sneak_event(conn: object) -> int:
        return await conn.execute(  # type: ignore[attr-defined,no-any-return]
            "UPDATE events SET type = 'forged' WHERE task_id = %s", (handle.id,)
        )

    with pytest.raises(Exception, match="append-only"):
        await store._run(sneak_event)  # type: ignore[attr-defined]
    assert (await app.get(handle.id)).status == TaskStatus.SUCCEEDED


async def _start_blocked_task(app: Tether) -> tuple[str, asyncio.Event, asyncio.Event]:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def block() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @app.workflow("blocked")
    async def blocked(ctx: Context) -> None:
        await ctx.step("block", block)

    handle = await app.submit("blocked")
    await asyncio.wait_for(started.wait(), 10)
    return handle.id, started, cancelled


async def test_a_run_whose_task_was_taken_over_stops_without_writing(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    async with app.worker(poll_interval=0.05, lease_ttl=0.6):
        task_id, _, cancelled = await _start_blocked_task(app)

        async def steal(conn: object) -> int:  # what a takeover after expiry looks like
            return await conn.execute(  # type: ignore[attr-defined,no-any-return]
                "UPDATE tasks SET lease_owner = 'thief', attempt = attempt + 1 WHERE id = %s",
                (task_id,),
            )

        await app.store._run(steal)  # type: ignore[attr-defined]
        await asyncio.wait_for(cancelled.wait(), 5)
    task = await app.get(task_id)
    assert task.status == TaskStatus.RUNNING and task.attempt == 2
    assert await app.steps(task_id) == [], "the abandoned run wrote nothing"


async def test_a_worker_whose_heartbeats_fail_otherwise_abandons_its_runs(
    make_app: Callable[[], Tether], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heartbeats that fail while the rest works (not `StoreUnavailable`: others may
    well reach the database and take the task over) give the runs up once their lease
    may have expired. An unreachable database does not (ADR 71:
    tests/engine/test_partition_fencing.py)."""
    app = make_app()
    async with app.worker(poll_interval=0.05, lease_ttl=0.6, grace=0.5):
        task_id, _, cancelled = await _start_blocked_task(app)

        async def unreachable(*args: object) -> dict[str, bool]:
            raise ConnectionError("database unreachable")

        monkeypatch.setattr(app.store, "heartbeat", unreachable)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.wait_for(cancelled.wait(), 5)
        # abandoned once the lease may have expired, not before
        assert loop.time() - start >= 0.3
        monkeypatch.undo()
    # The abandoned attempt wrote nothing after its start. (Its lease expired, so this
    # worker's claim loop may have recovered the task as attempt 2 before it stopped,
    # and handed that one back at shutdown: legitimate, and not the abandoned run.)
    events = await all_events(app.store, task_id)
    assert [e.type for e in events if e.attempt == 1] == ["task.started"], events


async def test_retention_purges_old_ended_tasks_in_batches(
    make_app: Callable[[], Tether],
) -> None:
    from tether.engine.retention import purge_ended
    from tether.models import TaskFilter

    app = make_app()

    @app.workflow("w")
    async def w(ctx: Context, n: int) -> int:
        return await ctx.step("n", lambda: n)

    @app.workflow("hold")
    async def hold(ctx: Context) -> None:
        await ctx.wait_for_signal("x")

    async with app.worker(poll_interval=0.05, retention=False):
        done = await app.submit_many("w", list(range(25)), idempotency_key=None)
        for h in done:
            await h.result(timeout=10)
        held = await app.submit("hold")
        await wait_status(app, held.id, TaskStatus.WAITING)
    assert await purge_ended(app.store, app.clock, older_than=3600) == 0, "too young"
    purged = await purge_ended(app.store, app.clock, older_than=0, batch=10)
    assert purged == 25
    remaining = await app.list_tasks(TaskFilter())
    assert [t.id for t in remaining] == [held.id], "waiting tasks are never purged"
    assert await app.store.list_events(task_id=done[0].id) == []
    assert await app.store.get_steps(done[0].id) == []


async def test_cancel_requested_while_running_is_not_parked_by_a_suspension(
    make_app: Callable[[], Tether],
) -> None:
    """The API (another process, no local worker) cancels a running task that then
    suspends on a wait: it must end cancelled, not wait forever."""
    app = make_app()
    api = make_app()

    @app.workflow("then_wait")
    async def then_wait(ctx: Context) -> None:
        async def cancel_from_elsewhere() -> None:
            task = await api.cancel(ctx.task_id)
            assert task.status == TaskStatus.RUNNING and task.cancel_requested

        await ctx.step("ask", cancel_from_elsewhere)
        await ctx.wait_for_signal("never")

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("then_wait")
        task = await handle.wait(timeout=10)
    assert task.status == TaskStatus.CANCELLED


async def test_same_key_for_another_workflow_or_options_is_a_conflict(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()

    @app.workflow("a")
    async def a(ctx: Context, x: int) -> int:
        return x

    @app.workflow("b")
    async def b(ctx: Context, x: int) -> int:
        return x

    first = await app.submit("a", {"x": 1}, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        await app.submit("b", {"x": 1}, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        await app.submit("a", {"x": 1}, idempotency_key="k", priority=5)
    assert (await app.submit("a", {"x": 1}, idempotency_key="k")).id == first.id


async def test_a_worker_claims_only_the_workflows_it_has(make_app: Callable[[], Tether]) -> None:
    """Rolling deploy: an old worker without workflow `new` leaves its tasks to a new one."""
    old, new = make_app(), make_app()

    @old.workflow("legacy")
    async def legacy(ctx: Context) -> str:
        return "old"

    for app in (old, new):

        @app.workflow("fresh")
        async def fresh(ctx: Context) -> str:
            return "anyone"

    @new.workflow("new_only")
    async def new_only(ctx: Context) -> str:
        return "new"

    async with old.worker(poll_interval=0.05):
        handle = await new.submit("new_only")
        done = await new.submit("fresh")
        assert await done.result(timeout=10) == "anyone"  # the old worker is working
        assert (await old.get(handle.id)).status == TaskStatus.QUEUED
    async with new.worker(poll_interval=0.05):
        assert await handle.result(timeout=10) == "new"


def test_a_tailing_reader_ends_only_after_the_final_event_or_settling() -> None:
    from tether.store.base import EVENT_SETTLE_SECONDS, events_complete

    def task(status: TaskStatus, finished_at: float | None) -> Task:
        return Task("t", "d", "w", 1, "default", 0, status, None, 0.0, 0.0,
                    finished_at=finished_at)  # fmt: skip

    now = 1000.0
    assert not events_complete(task(TaskStatus.RUNNING, None), True, now)
    assert events_complete(task(TaskStatus.SUCCEEDED, now - 1), True, now)
    # ended, final event not seen yet (on PostgreSQL it may still be held back): wait
    assert not events_complete(task(TaskStatus.SUCCEEDED, now - 1), False, now)
    # ended long ago: nothing can be held back any more
    ended = now - EVENT_SETTLE_SECONDS - 1
    assert events_complete(task(TaskStatus.SUCCEEDED, ended), False, now)


async def test_a_finish_carries_its_last_step_results_atomically(
    make_app: Callable[[], Tether],
) -> None:
    """A finish with held step results (ADR 44) writes them with the completion, or
    nothing at all when the writer no longer holds the task."""
    app = make_app()

    @app.workflow("work")
    async def work(ctx: Context) -> None:
        raise AssertionError("driven by hand in this test")

    handle = await app.submit("work")
    await app.open()
    now = app.clock.now()
    (first,) = await app.store.claim("old", ["default"], 1, now, now + 0.01, [("work", 1)])
    later = now + 1.0  # the old holder's lease has expired: another worker takes over
    (second,) = await app.store.claim("new", ["default"], 1, later, later + 30, [("work", 1)])
    assert (first.task.attempt, second.task.attempt) == (1, 2)

    def record(result: int) -> StepRecord:
        return StepRecord(handle.id, 1, "one", StepKind.STEP, StepStatus.SUCCEEDED, result=result)

    stale = Finish(
        handle.id, 1, TaskStatus.SUCCEEDED, "1", steps=(StepWrite(handle.id, 1, record(1)),)
    )
    assert await app.store.commit([stale], "old", later) == [False]
    assert await app.steps(handle.id) == []
    assert (await app.get(handle.id)).status == TaskStatus.RUNNING

    done = Finish(
        handle.id, 2, TaskStatus.SUCCEEDED, "2", steps=(StepWrite(handle.id, 2, record(2)),)
    )
    assert await app.store.commit([done], "new", later) == [True]
    task = await app.get(handle.id)
    assert (task.status, task.steps_done, task.current_step) == (TaskStatus.SUCCEEDED, 1, "one")
    assert [s.result for s in await app.steps(handle.id)] == [2]
    events = await all_events(app.store, handle.id)
    types = [e.type for e in events if e.attempt == 2]
    assert types[-2:] == ["step.succeeded", "task.succeeded"]


async def test_reads_of_one_turn_share_a_query_and_keep_tenants_apart(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()

    @app.workflow("w")
    async def w(ctx: Context) -> None:
        return None

    acme = await app.submit("w", tenant="acme")
    other = await app.submit("w", tenant="other")
    store = app.store
    mine, theirs, any_tenant, missing, second = await asyncio.gather(
        store.get_task(acme.id, "acme"),
        store.get_task(acme.id, "other"),
        store.get_task(other.id, None),
        store.get_task("no-such-task", None),
        store.get_task(other.id, "other"),
    )
    assert mine is not None and mine.id == acme.id
    assert theirs is None  # another tenant's task does not exist for this caller
    assert any_tenant is not None and any_tenant.tenant == "other"
    assert missing is None
    assert second is not None and second.id == other.id


async def test_a_refused_batch_leaves_nothing_behind(make_app: Callable[[], Tether]) -> None:
    """A batch submission is one unit: when its second task is refused (a key reused
    with other input), the first task and its key are not kept either."""
    app = make_app()

    @app.workflow("pay")
    async def pay(ctx: Context, order: dict[str, int]) -> None:
        return None

    await app.submit("pay", {"amount": 5}, idempotency_key="taken")
    batch = [
        app.new_task("pay", {"amount": 1}, idempotency_key="fresh"),
        app.new_task("pay", {"amount": 6}, idempotency_key="taken"),
    ]
    with pytest.raises(IdempotencyConflict):
        await app.submit_batch(batch)
    assert len(await app.list_tasks()) == 1
    # "fresh" was not remembered: another input under it is a new task, not a conflict.
    again = await app.submit("pay", {"amount": 2}, idempotency_key="fresh")
    assert again.created


async def test_the_approval_inbox_pages_by_time_then_id(store_url: str) -> None:
    """`ApprovalFilter.before` (the API's approvals cursor): newest first, and approvals
    made at the same instant ordered by id, so paging never repeats or drops one."""
    from tether.models import ApprovalFilter
    from tether.testing import TestEnvironment

    app = Tether(store_url)

    @app.workflow("gate")
    async def gate(ctx: Context, n: int) -> None:
        await ctx.approval(summary=f"#{n}", risk="high")

    async with TestEnvironment(app, in_memory=False) as env:  # the clock stands still
        for n in range(5):
            await app.submit("gate", n)
        await env.run_until_idle(skip_time=False)
        everything = await app.store.list_approvals(ApprovalFilter(limit=100))
        assert len(everything) == 5 and len({a.created_at for a in everything}) == 1
        assert [a.id for a in everything] == sorted((a.id for a in everything), reverse=True)
        pages, before = [], None
        while True:
            page = await app.store.list_approvals(ApprovalFilter(limit=2, before=before))
            if not page:
                break
            pages.append([a.id for a in page])
            before = (page[-1].created_at, page[-1].id)
        assert [i for p in pages for i in p] == [a.id for a in everything]
        assert [len(p) for p in pages] == [2, 2, 1]
