"""What a worker does on its own besides running tasks, with the settings that govern
it (README, "Configuration"): `shutdown_grace` lets running tasks finish on stop, and
workers purge ended tasks older than `retention_days`. Both backends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from helpers import events_through, wait_status
from tether import Context, TaskNotFound, TaskStatus, Tether
from tether.engine import retention
from tether.testing import ManualClock

DAY = 86400.0


@pytest.mark.parametrize(("grace", "finished"), [("5", True), ("0", False)])
async def test_shutdown_grace_lets_a_running_task_finish(
    make_app: Callable[[], Tether],
    monkeypatch: pytest.MonkeyPatch,
    grace: str,
    finished: bool,
) -> None:
    """Stopping a worker waits up to `shutdown_grace` seconds for its running tasks;
    with no grace the task is handed back unfinished (and its step runs again later)."""
    monkeypatch.setenv("TETHER_SHUTDOWN_GRACE", grace)
    app = make_app()
    running = asyncio.Event()
    runs = 0

    @app.workflow("report")
    async def report(ctx: Context) -> str:
        async def write() -> str:
            nonlocal runs
            runs += 1
            running.set()
            await asyncio.sleep(0.3)  # the work the stop must not cut short
            return "written"

        return await ctx.step("write", write)

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("report")
        await asyncio.wait_for(running.wait(), 10)
    task = await app.get(handle.id)
    last = "task.succeeded" if finished else "task.released"
    events = [(e.type, e.decision) for e in await events_through(app, handle.id, last)]
    if finished:
        assert (task.status, task.result) == (TaskStatus.SUCCEEDED, "written")
        assert ("task.released", "worker_shutdown") not in events
    else:
        assert task.status == TaskStatus.QUEUED
        assert events[-1] == ("task.released", "worker_shutdown")
        assert await app.steps(handle.id) == []
        async with app.worker(poll_interval=0.05):
            assert await handle.result(timeout=10) == "written"
        assert runs == 2


async def test_workers_purge_ended_tasks_older_than_retention_days(
    make_app: Callable[[], Tether], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A running worker sweeps on its own: ended tasks past `retention_days` (default 30)
    go with their steps and events; younger ended tasks and waiting tasks stay."""
    monkeypatch.setattr(retention, "FIRST_SWEEP_WITHIN", 0.0)
    monkeypatch.setattr(retention, "SWEEP_EVERY", 0.05)
    app = make_app()
    assert app.settings.retention_days == 30
    clock = app.clock = ManualClock()

    @app.workflow("note")
    async def note(ctx: Context, n: int) -> int:
        return await ctx.step("n", lambda: n)

    @app.workflow("hold")
    async def hold(ctx: Context) -> None:
        await ctx.wait_for_signal("never")

    async with app.worker(poll_interval=0.05, retention=False):
        old = await app.submit("note", 1)
        await old.result(timeout=10)
        held = await app.submit("hold")
        await wait_status(app, held.id, TaskStatus.WAITING)
        clock.advance(31 * DAY)
        young = await app.submit("note", 2)  # ended 29 days before the cut-off
        await young.result(timeout=10)
        clock.advance(2 * DAY)
    assert await app.steps(old.id) != []

    async with app.worker(poll_interval=0.05):  # retention on, as configured
        loop = asyncio.get_running_loop()
        until = loop.time() + 10
        while True:
            try:
                await app.get(old.id)
            except TaskNotFound:
                break
            assert loop.time() < until, "the worker did not purge the old task"
            await asyncio.sleep(0.02)
    assert await app.store.get_steps(old.id) == []
    assert await app.store.list_events(task_id=old.id) == []
    assert (await app.get(young.id)).status == TaskStatus.SUCCEEDED
    assert (await app.get(held.id)).status == TaskStatus.WAITING
