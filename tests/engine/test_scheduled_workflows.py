"""Cron schedules on a real worker with a manual clock, both backends: `@app.schedule`
fires each tick once, missed ticks follow their policy, a paused schedule starts
nothing and resumes from its next tick, time zones follow daylight saving time, and a
tick whose input no longer fits moves on and says why."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from tether import (
    ConfigError,
    Context,
    InputValidationError,
    ScheduleExists,
    TaskFilter,
    TaskStatus,
    Tether,
)
from tether.models import Task
from tether.models.schedules import MissedTicks, ScheduleOrigin
from tether.schedules import scheduled_tick
from tether.schedules.spec import ScheduleSpec
from tether.services import schedules
from tether.testing import TestEnvironment

START = datetime(2024, 6, 1, 9, 59, 30, tzinfo=UTC).timestamp()
HOUR = 3600.0


def _utc(ts: float | None) -> str:
    assert ts is not None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


async def _tasks(app: Tether, created_by: str) -> list[Task]:
    found = await app.list_tasks(TaskFilter(limit=1000))
    mine = [t for t in found if t.created_by == created_by]
    return sorted(mine, key=lambda t: (scheduled_tick(t.idempotency_key) or 0, t.id))


def _app(make_app: Callable[[], Tether]) -> Tether:
    app = make_app()

    @app.schedule("0 * * * *", input={"label": "hourly"})
    @app.workflow("report")
    async def report(ctx: Context, label: str) -> str:
        return f"{label}@{scheduled_tick(ctx.task.idempotency_key)}"

    return app


async def test_a_declared_schedule_fires_each_tick_once(make_app: Callable[[], Tether]) -> None:
    app = _app(make_app)
    async with TestEnvironment(app, start=START, in_memory=False) as env:
        stored = await schedules.get(app, "report", "default")
        assert stored is not None and stored.origin == ScheduleOrigin.CODE
        assert _utc(stored.next_at) == "2024-06-01 10:00"
        await env.run_until_idle()
        assert await _tasks(app, "schedule:report") == []  # no tick yet
        for hour in range(3):
            env.clock.set(START + 30 + hour * HOUR)  # exactly on the tick
            await env.run_until_idle()
            await env.run_until_idle()  # a second look fires nothing more
        ran = await _tasks(app, "schedule:report")
        assert [_utc(scheduled_tick(t.idempotency_key)) for t in ran] == [
            "2024-06-01 10:00",
            "2024-06-01 11:00",
            "2024-06-01 12:00",
        ]
        assert all(t.status == TaskStatus.SUCCEEDED for t in ran)
        assert ran[0].result == f"hourly@{START + 30}"
        assert ran[0].idempotency_key == "schedule:report:2024-06-01T10:00:00.000000Z"
        after = await schedules.get(app, "report", "default")
        assert after is not None and after.last_task_id == ran[-1].id
        assert _utc(after.next_at) == "2024-06-01 13:00"


@pytest.mark.parametrize(
    ("missed", "max_missed", "expected"),
    [
        (MissedTicks.SKIP, 10, []),
        (MissedTicks.ONCE, 10, ["15:00"]),
        (MissedTicks.ALL, 10, ["10:00", "11:00", "12:00", "13:00", "14:00", "15:00"]),
        (MissedTicks.ALL, 3, ["13:00", "14:00", "15:00"]),
    ],
)
async def test_ticks_missed_while_nothing_ran_follow_the_policy(
    make_app: Callable[[], Tether], missed: MissedTicks, max_missed: int, expected: list[str]
) -> None:
    app = _app(make_app)
    spec = ScheduleSpec(
        "catch-up",
        "report",
        "0 * * * *",
        input={"label": "x"},
        missed=missed,
        max_missed=max_missed,
    )
    async with TestEnvironment(app, start=START, in_memory=False) as env:
        await schedules.create(app, "t1", spec)
        # Nothing runs from 09:59:30 to 15:20: the clock jumps over six ticks at once.
        env.clock.set(START + 5 * HOUR + 20 * 60 + 30)
        await env.run_until_idle()
        ran = await _tasks(app, "schedule:catch-up")
        assert [_utc(scheduled_tick(t.idempotency_key))[11:] for t in ran] == expected
        s = await schedules.get(app, "catch-up", "t1")
        assert s is not None and _utc(s.next_at) == "2024-06-01 16:00"


async def test_a_paused_schedule_starts_nothing_and_resumes_from_its_next_tick(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    async with TestEnvironment(app, start=START, in_memory=False) as env:
        paused = await schedules.pause(app, "report", "default")
        assert paused is not None and paused.paused and paused.next_at is None
        env.clock.set(START + 3 * HOUR)  # 10:00, 11:00 and 12:00 pass while paused
        await env.run_until_idle()
        assert await _tasks(app, "schedule:report") == []
        resumed = await schedules.resume(app, "report", "default")
        assert resumed is not None and _utc(resumed.next_at) == "2024-06-01 13:00"
        await env.run_until_idle()
        assert await _tasks(app, "schedule:report") == []  # paused ticks are not "missed"
        env.clock.set(resumed.next_at or 0)
        await env.run_until_idle()
        assert [
            _utc(scheduled_tick(t.idempotency_key)) for t in await _tasks(app, "schedule:report")
        ] == ["2024-06-01 13:00"]


async def test_a_restart_keeps_the_pause_of_a_declared_schedule(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    async with TestEnvironment(app, start=START, in_memory=False):
        await schedules.pause(app, "report", "default")
    again = _app(make_app)
    async with TestEnvironment(again, start=START + 10, in_memory=False):
        s = await schedules.get(again, "report", "default")
        assert s is not None and s.paused


async def test_a_daily_schedule_in_a_zone_runs_once_a_day_across_dst(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()

    @app.schedule("30 1 * * *", tz="Europe/Lisbon", name="nightly")
    @app.workflow("nightly")
    async def nightly(ctx: Context) -> None:
        return None

    # From the Saturday before the autumn change: 01:30 happens twice on Sunday.
    start = datetime(2024, 10, 26, 0, 0, tzinfo=UTC).timestamp()
    async with TestEnvironment(app, start=start, in_memory=False) as env:
        for _ in range(3):
            s = await schedules.get(app, "nightly", "default")
            assert s is not None and s.next_at is not None
            env.clock.set(s.next_at)
            await env.run_until_idle()
        # The second 01:30 of Sunday (01:30 UTC) is no tick: the clock goes past it.
        env.clock.set(datetime(2024, 10, 28, 2, 0, tzinfo=UTC).timestamp())
        await env.run_until_idle()
        ran = await _tasks(app, "schedule:nightly")
        assert [_utc(scheduled_tick(t.idempotency_key)) for t in ran] == [
            "2024-10-26 00:30",  # 01:30 WEST
            "2024-10-27 00:30",  # 01:30 WEST, the first of the two
            "2024-10-28 01:30",  # 01:30 WET
        ]


async def test_trigger_runs_now_paused_or_not_once_per_key(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    async with TestEnvironment(app, start=START, in_memory=False) as env:
        await schedules.pause(app, "report", "default")
        first = await schedules.trigger(app, "report", "default", idempotency_key="k1")
        again = await schedules.trigger(app, "report", "default", idempotency_key="k1")
        other = await schedules.trigger(app, "report", "default")
        assert first is not None and again is not None and other is not None
        assert first.created and not again.created and again.id == first.id
        assert other.id != first.id
        assert first.initial.idempotency_key == "schedule:report:trigger:k1"
        await env.run_until_idle()
        assert len(await _tasks(app, "schedule:report")) == 2
        assert await schedules.trigger(app, "nope", "default") is None


async def test_a_tick_whose_input_no_longer_fits_moves_on_and_says_why(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    async with TestEnvironment(app, start=START, in_memory=False) as env:
        # Stored as an older version of the workflow would have taken it.
        row = ScheduleSpec("old", "report", "0 * * * *", input={"title": "x"}).row(
            "t1", START, origin=ScheduleOrigin.API, created_by=None
        )
        await app.store.create_schedule(row)
        env.clock.set(START + 30)
        await env.run_until_idle()
        s = await schedules.get(app, "old", "t1")
        assert s is not None and _utc(s.next_at) == "2024-06-01 11:00"
        assert s.last_error is not None and s.last_error.startswith("InputValidationError")
        assert await _tasks(app, "schedule:old") == []


async def test_only_schedules_of_registered_workflows_fire_here(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    bare = make_app()  # registers no workflow: its scheduler leaves the schedule alone
    async with TestEnvironment(app, start=START, in_memory=False):
        pass
    await bare.open()
    scheduler = bare.scheduler()
    bare.clock = app.clock
    assert await scheduler.run_once() == (0, None)


async def test_creation_checks_the_workflow_and_input(make_app: Callable[[], Tether]) -> None:
    from tether import UnknownWorkflow

    app = _app(make_app)
    await app.open()
    with pytest.raises(UnknownWorkflow):
        await schedules.create(app, "t1", ScheduleSpec("a", "nope", "* * * * *"))
    with pytest.raises(InputValidationError):
        await schedules.create(app, "t1", ScheduleSpec("a", "report", "* * * * *", input=5))
    await schedules.create(
        app, "t1", ScheduleSpec("a", "report", "* * * * *", input={"label": "l"})
    )
    with pytest.raises(ScheduleExists):
        await schedules.create(
            app, "t1", ScheduleSpec("a", "report", "0 * * * *", input={"label": "l"})
        )


async def test_bad_declarations_fail_the_start(make_app: Callable[[], Tether]) -> None:
    app = make_app()

    @app.schedule("* * * * *")
    async def not_a_workflow(ctx: Context) -> None:
        return None

    with pytest.raises(ConfigError, match="not_a_workflow"):
        app.declared_schedules(START)

    typed = make_app()

    @typed.schedule("* * * * *", input={"wrong": 1})
    @typed.workflow("needs_label")
    async def needs_label(ctx: Context, label: str) -> None:
        return None

    with pytest.raises(InputValidationError):
        typed.declared_schedules(START)


async def test_a_pass_says_when_the_next_tick_is(make_app: Callable[[], Tether]) -> None:
    """The loop sleeps until the tick a pass returns: the one it just moved the
    schedule on to included (else it would sleep a whole poll interval after each
    firing, and fire later and later)."""
    from tether.testing import ManualClock

    app = _app(make_app)
    app.clock = ManualClock(START)
    scheduler = app.scheduler()
    await app.open()
    await scheduler.declare()
    assert await scheduler.run_once() == (0, START + 30)
    app.clock.set(START + 30)
    assert await scheduler.run_once() == (1, START + 30 + HOUR)
    # A scheduler that comes after another fired the tick still knows the next one.
    rival = app.scheduler()
    app.clock.set(START + 30 + HOUR)
    first, second = await scheduler.run_once(), await rival.run_once()
    assert first == (1, START + 30 + 2 * HOUR)
    assert second == (0, START + 30 + 2 * HOUR)
