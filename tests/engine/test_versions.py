"""Workflow versions and rolling deploys (ADR 64): several versions registered at once,
a worker claims only the (workflow, version) pairs it has, and a task never runs on
the code of another version. A task of a version no worker has waits, queued."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from helpers import event_where, wait_status
from tether import Context, TaskStatus, Tether, UnknownWorkflow
from tether.models import TaskFilter
from tether.services import health


def _versions(app: Tether, *versions: int) -> None:
    """Register `greet` under each of `versions`, each its own code, returning
    `"<app tag> v<version>"` (which code ran) after waiting for a signal `go` when its
    input says so."""
    for version in versions:

        def make(v: int) -> Callable[..., Any]:
            async def greet(ctx: Context, wait: bool = False) -> str:
                if wait:
                    await ctx.wait_for_signal("go")
                return await ctx.step("say", lambda: f"{ctx.task.workflow_version}:v{v}")

            return greet

        app.workflow("greet", version=version)(make(version))


class CountingClaims:
    """Counts the claims a store answers (how a test knows a worker kept looking)."""

    def __init__(self, app: Tether) -> None:
        self.calls = 0
        self._claim = app.store.claim
        app.store.claim = self._counted  # type: ignore[method-assign]

    async def _counted(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return await self._claim(*args, **kwargs)

    async def more(self, n: int, timeout: float = 10) -> None:
        """Wait until `n` more claims were made."""
        target = self.calls + n
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.calls < target:
            assert loop.time() < end, f"the worker made {self.calls} claims, not {target}"
            await asyncio.sleep(0.01)


async def test_a_submit_takes_the_newest_version_unless_it_names_one(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    _versions(app, 1, 2)
    with pytest.raises(ValueError, match="version 2 is registered twice"):
        _versions(app, 2)
    assert app.workflow_versions() == [("greet", 1), ("greet", 2)]
    with pytest.raises(UnknownWorkflow, match=r"no version 3 here \(registered: 1, 2\)"):
        await app.submit("greet", {}, version=3)
    assert await app.list_tasks(TaskFilter()) == [], "a refused submission wrote nothing"

    async with app.worker(poll_interval=0.05):
        newest = await app.submit("greet", {})
        pinned = await app.submit("greet", {}, version=1)
        assert await newest.result(timeout=10) == "2:v2"
        assert await pinned.result(timeout=10) == "1:v1"
    assert (await app.get(newest.id)).workflow_version == 2
    assert (await app.get(pinned.id)).workflow_version == 1


async def test_a_rolling_deploy_runs_each_task_on_its_own_version(
    make_app: Callable[[], Tether],
) -> None:
    """Old workers (v1) and new ones (v1 and v2) share a database: the old ones never
    take a v2 task, which waits (queued, not failed) until a new worker is up."""
    old, new = make_app(), make_app()
    _versions(old, 1)
    _versions(new, 1, 2)
    v2 = await new.submit("greet", {})  # first in the queue: an old worker meets it first
    v1 = await new.submit("greet", {}, version=1)
    claims = CountingClaims(old)

    async with old.worker(poll_interval=0.02):
        assert await v1.result(timeout=10) == "1:v1"
        await claims.more(5)  # the old worker kept claiming past the v2 task
        waiting = await old.get(v2.id)
        assert (waiting.status, waiting.attempt, waiting.error) == (TaskStatus.QUEUED, 0, None)
        await event_where(old, v2.id, lambda e: e.type == "task.created")
        assert [e.type for e in await old.store.list_events(task_id=v2.id)] == ["task.created"]
        unserved = await health.unserved(old)  # and says so: what /metrics shows
        assert [(v.workflow, v.version, v.tasks) for v in unserved.waiting] == [("greet", 2, 1)]
        assert [w.id for w in unserved.workers] == [old.workers[-1].id]
        async with new.worker(poll_interval=0.02):
            assert await v2.result(timeout=10) == "2:v2"
            assert (await health.unserved(new)).waiting == []
    assert [w.id for w in (await health.unserved(new)).workers] == [], "stopped workers left"
    started = await event_where(new, v2.id, lambda e: e.type == "task.started")
    assert started.worker == new.workers[-1].id


async def test_a_started_task_resumes_on_its_version_after_a_deploy(
    make_app: Callable[[], Tether],
) -> None:
    """A v1 task waiting through a deploy resumes on the new code's v1, and the new
    code's one function may serve both versions (stacked registrations), branching on
    `ctx.task.workflow_version` to keep the old step sequence."""
    old, new = make_app(), make_app()
    _versions(old, 1)
    paths: list[tuple[int, str]] = []

    @new.workflow("greet", version=2)
    @new.workflow("greet", version=1)
    async def greet(ctx: Context, wait: bool = False) -> str:
        if wait:
            await ctx.wait_for_signal("go")
        if ctx.task.workflow_version >= 2:
            await ctx.step("check", lambda: "checked")  # a step v1 never had
        said = await ctx.step("say", lambda: "new code")
        paths.append((ctx.task.workflow_version, said))
        return said

    async with old.worker(poll_interval=0.02):
        started = await old.submit("greet", {"wait": True})
        await wait_status(old, started.id, TaskStatus.WAITING)
    async with new.worker(poll_interval=0.02):
        await new.signal(started.id, "go")
        fresh = await new.submit("greet", {})
        assert await started.result(timeout=10) == "new code"
        assert await fresh.result(timeout=10) == "new code"
    assert sorted(paths) == [(1, "new code"), (2, "new code")]
    assert [s.name for s in await new.steps(started.id)] == ["go", "say"]
    assert [s.name for s in await new.steps(fresh.id)] == ["check", "say"]


async def test_a_task_handed_back_for_its_version_is_not_claimed_again_here(
    make_app: Callable[[], Tether],
) -> None:
    """A runtime whose claims list a pair it cannot run (the worker's safety net): the
    task goes back to the queue once, not in a claim-and-release loop."""
    liar, right = make_app(), make_app()
    _versions(liar, 1)
    _versions(right, 1, 2)
    handle = await right.submit("greet", {})
    liar.workflow_versions = lambda: [("greet", 1), ("greet", 2)]  # type: ignore[method-assign]
    claims = CountingClaims(liar)

    async with liar.worker(poll_interval=0.02):
        await event_where(liar, handle.id, lambda e: e.type == "task.released")
        await claims.more(10)
    events = await liar.store.list_events(task_id=handle.id)
    released = [e for e in events if e.type == "task.released"]
    assert [e.decision for e in released] == ["unknown_workflow"]
    assert (await liar.get(handle.id)).status == TaskStatus.QUEUED
    async with right.worker(poll_interval=0.02):
        assert await handle.result(timeout=10) == "2:v2"


async def test_a_rerun_keeps_the_version_of_the_task_it_reruns(
    make_app: Callable[[], Tether],
) -> None:
    """Its reused steps were recorded by that version's code; another version only when
    asked, or when this app no longer has the original's."""
    app, newer = make_app(), make_app()
    _versions(app, 1, 2)
    _versions(newer, 2)
    async with app.worker(poll_interval=0.02):
        first = await app.submit("greet", {"wait": True}, version=1)
        await wait_status(app, first.id, TaskStatus.WAITING)
        await app.cancel(first.id)
        again = await app.rerun(first.id)
        onto = await app.rerun(first.id, version=2)
        moved = await newer.rerun(first.id)
        for handle in (again, onto, moved):
            await wait_status(app, handle.id, TaskStatus.WAITING)
            await app.signal(handle.id, "go")
        assert await again.result(timeout=10) == "1:v1"
        assert await onto.result(timeout=10) == "2:v2"
        assert await moved.result(timeout=10) == "2:v2"
