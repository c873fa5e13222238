"""Schedules in the store, on both backends: names are unique per tenant, declarations
in code keep an operator's pause, and a firing is a compare-and-set on the schedule's
revision in the transaction that submits the tick's task, so schedulers racing on one
tick (in one process or several) create one task."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest

from tether import Context, Tether
from tether.errors import ScheduleExists
from tether.models import TaskFilter
from tether.models.schedules import Schedule, ScheduleOrigin, ScheduleStatus
from tether.schedules.spec import ScheduleSpec
from tether.schedules.ticks import tick_key
from tether.store.schedules import Firing

EVERY_MINUTE = ScheduleSpec("m", "w", "* * * * *", input={"n": 1})


def _app(make_app: Callable[[], Tether]) -> Tether:
    app = make_app()

    @app.workflow("w")
    async def w(ctx: Context, n: int) -> int:
        return n

    return app


def _row(app: Tether, spec: ScheduleSpec = EVERY_MINUTE, tenant: str = "t1") -> Schedule:
    return spec.row(tenant, app.clock.now(), origin=ScheduleOrigin.API, created_by="me")


def _firing(app: Tether, s: Schedule) -> Firing:
    assert s.next_at is not None
    tick = s.next_at
    task = app.schedule_task(s, tick, tick_key(s.name, tick))
    return Firing(s.tenant, s.name, s.revision, tick + 60, [task], last_tick_at=tick)


async def test_names_are_unique_per_tenant_and_reads_are_tenant_scoped(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    store = app.store
    made = await store.create_schedule(_row(app))
    assert made.status == ScheduleStatus.ACTIVE and made.revision == 0
    with pytest.raises(ScheduleExists):
        await store.create_schedule(_row(app))
    await store.create_schedule(_row(app, tenant="t2"))  # another tenant's namespace
    assert await store.get_schedule("t3", "m") is None
    assert [s.tenant for s in await store.list_schedules("t1")] == ["t1"]
    assert len(await store.list_schedules(None)) == 2
    for name in ("b", "a", "c"):
        await store.create_schedule(_row(app, replace(EVERY_MINUTE, name=name)))
    assert [s.name for s in await store.list_schedules("t1", limit=2)] == ["a", "b"]
    assert [s.name for s in await store.list_schedules("t1", after="b")] == ["c", "m"]
    assert await store.delete_schedule("t1", "m")
    assert not await store.delete_schedule("t1", "m")
    assert await store.get_schedule("t2", "m") is not None


async def test_pause_and_resume_change_the_revision_and_the_next_tick(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    s = await app.store.create_schedule(_row(app))
    now = app.clock.now()
    paused = await app.store.set_schedule_status("t1", "m", True, None, now)
    assert paused is not None and paused.paused and paused.next_at is None
    assert paused.revision == s.revision + 1
    again = await app.store.set_schedule_status("t1", "m", True, None, now)
    assert again is not None and again.revision == paused.revision  # no change
    # A firing planned before the pause applies to nothing.
    assert await app.store.fire_schedule(_firing(app, s), now) is None
    resumed = await app.store.set_schedule_status("t1", "m", False, now + 120, now)
    assert resumed is not None and resumed.next_at == now + 120 and not resumed.paused
    assert await app.store.set_schedule_status("t9", "m", True, None, now) is None


async def test_a_declaration_updates_the_definition_and_keeps_the_pause(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    store, now = app.store, app.clock.now()
    code = EVERY_MINUTE.row("t1", now, origin=ScheduleOrigin.CODE, created_by=None)
    await store.declare_schedules([code], now)
    await store.declare_schedules([code], now)  # the next process: nothing changes
    first = await store.get_schedule("t1", "m")
    assert first is not None and first.revision == 0 and first.origin == ScheduleOrigin.CODE
    # A new input keeps the next tick; a new expression moves it.
    await store.declare_schedules([replace(code, input={"n": 2}, next_at=now + 999)], now)
    second = await store.get_schedule("t1", "m")
    assert second is not None and second.input == {"n": 2} and second.next_at == first.next_at
    await store.declare_schedules([replace(code, cron="*/5 * * * *", next_at=now + 999)], now)
    third = await store.get_schedule("t1", "m")
    assert third is not None and third.cron == "*/5 * * * *" and third.next_at == now + 999
    # Paused by an operator: a restart that declares it again does not resume it.
    await store.set_schedule_status("t1", "m", True, None, now)
    await store.declare_schedules([replace(code, input={"n": 3})], now)
    fourth = await store.get_schedule("t1", "m")
    assert fourth is not None and fourth.paused and fourth.next_at is None
    assert fourth.input == {"n": 3}


async def test_one_firing_per_revision_applies(make_app: Callable[[], Tether]) -> None:
    app = _app(make_app)
    await app.open()
    s = await app.store.create_schedule(_row(app))
    assert s.next_at is not None
    agenda = await app.store.schedule_agenda(s.next_at, ["w"], 10)
    assert [d.name for d in agenda.due] == ["m"]
    assert (await app.store.schedule_agenda(s.next_at - 1, ["w"], 10)).next_at == s.next_at
    assert (await app.store.schedule_agenda(s.next_at, ["other"], 10)).due == []
    done = await app.store.fire_schedule(_firing(app, s), s.next_at)
    assert done is not None and [d.created for d in done] == [True]
    assert await app.store.fire_schedule(_firing(app, s), s.next_at) is None
    after = await app.store.get_schedule("t1", "m")
    assert after is not None
    assert (after.next_at, after.last_tick_at) == (s.next_at + 60, s.next_at)
    assert after.last_task_id == done[0].task.id
    tasks = await app.list_tasks(TaskFilter(tenant="t1"))
    assert [t.idempotency_key for t in tasks] == [tick_key("m", s.next_at)]
    assert tasks[0].created_by == "schedule:m" and tasks[0].run_at == s.next_at
    # A firing that only moves on (every tick skipped) creates nothing.
    skip = Firing("t1", "m", after.revision, after.next_at + 60, error="why")
    assert await app.store.fire_schedule(skip, after.next_at) == []
    moved = await app.store.get_schedule("t1", "m")
    assert (
        moved is not None and moved.last_error == "why" and moved.last_task_id == after.last_task_id
    )


async def test_the_tick_key_holds_even_past_the_revision(make_app: Callable[[], Tether]) -> None:
    """Two firings of one tick from different revisions (a pause and resume between
    them, say) still make one task: the tick is its idempotency key."""
    app = _app(make_app)
    await app.open()
    s = await app.store.create_schedule(_row(app))
    first = _firing(app, s)
    assert await app.store.fire_schedule(first, app.clock.now()) is not None
    now_s = await app.store.get_schedule("t1", "m")
    assert now_s is not None
    again = replace(first, revision=now_s.revision, tasks=[_firing(app, s).tasks[0]])
    done = await app.store.fire_schedule(again, app.clock.now())
    assert done is not None and [d.created for d in done] == [False]
    assert len(await app.list_tasks(TaskFilter(tenant="t1"))) == 1


async def test_racing_stores_fire_a_tick_once(make_app: Callable[[], Tether]) -> None:
    """Eight stores (eight connection pools: on PostgreSQL eight concurrent
    transactions) fire the same planned tick at once: one applies."""
    apps = [_app(make_app) for _ in range(8)]
    for a in apps:
        await a.open()
    s = await apps[0].store.create_schedule(_row(apps[0]))
    results = await asyncio.gather(
        *(a.store.fire_schedule(_firing(a, s), a.clock.now()) for a in apps)
    )
    applied = [r for r in results if r is not None]
    assert len(applied) == 1 and applied[0][0].created
    assert len(await apps[0].list_tasks(TaskFilter(tenant="t1"))) == 1
