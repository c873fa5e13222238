"""Child workflows: a parent starts children as tasks of their own, waits for them
without a slot, gathers them, sees their failures, and takes them with it when it ends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from pydantic import BaseModel

from helpers import wait_status
from tether import ChildFailed, Context, TaskFilter, TaskStatus, Tether, WaitReason
from tether.models import StepKind, StepStatus
from tether.testing import TestEnvironment


class Pair(BaseModel):
    left: int
    right: int


def _family(app: Tether) -> None:
    """Workflows the tests share: a doubler, a failure, a child that waits for a signal."""

    @app.workflow("double")
    async def double(ctx: Context, n: int) -> int:
        return await ctx.step("times_two", lambda: n * 2)

    @app.workflow("broken")
    async def broken(ctx: Context) -> None:
        raise ValueError("no such page")

    @app.workflow("waits")
    async def waits(ctx: Context, depth: int = 0) -> str:
        if depth:
            await ctx.child("waits", {"depth": depth - 1})
        return str(await ctx.wait_for_signal("go"))


async def test_a_child_returns_its_result_and_is_linked(make_app: Callable[[], Tether]) -> None:
    app = make_app()
    _family(app)

    @app.workflow("parent")
    async def parent(ctx: Context, n: int) -> int:
        return await ctx.child("double", n) + 1

    async with app.worker(concurrency=4):
        handle = await app.submit("parent", {"n": 20}, tenant="acme", correlation_id="order-7")
        assert await handle.result(timeout=20) == 41
    (child,) = await app.list_tasks(TaskFilter(parent_id=handle.id))
    assert (child.workflow, child.status, child.result) == ("double", TaskStatus.SUCCEEDED, 40)
    assert child.tenant == "acme" and child.correlation_id == "order-7"
    assert child.idempotency_key == f"child:{handle.id}:1"
    assert (await app.get(child.id)).parent_id == handle.id
    (entry,) = await app.steps(handle.id)
    assert (entry.kind, entry.status, entry.name) == (
        StepKind.CHILD,
        StepStatus.SUCCEEDED,
        "double",
    )
    assert entry.meta["child_id"] == child.id and entry.result["result"] == 40
    assert await app.list_tasks(TaskFilter(parent_id=handle.id, tenant="other")) == []


async def test_a_parent_fans_out_to_a_thousand_children_and_gathers(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    _family(app)

    @app.workflow("fan")
    async def fan(ctx: Context, count: int) -> int:
        handles = [ctx.start_child("double", i) for i in range(count)]
        return sum(await asyncio.gather(*handles))

    async with app.worker(concurrency=100):
        handle = await app.submit("fan", {"count": 1000})
        assert await handle.result(timeout=120) == sum(2 * i for i in range(1000))
    children = await app.list_tasks(TaskFilter(parent_id=handle.id, limit=2000))
    assert len(children) == 1000
    assert {c.idempotency_key for c in children} == {
        f"child:{handle.id}:{i}" for i in range(1, 1001)
    }
    steps = await app.steps(handle.id)
    assert len(steps) == 1000 and all(s.status == StepStatus.SUCCEEDED for s in steps)


async def test_a_failed_child_raises_child_failed_in_the_parent(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    _family(app)

    @app.workflow("careful")
    async def careful(ctx: Context) -> dict[str, str | None]:
        try:
            await ctx.child("broken")
        except ChildFailed as exc:
            assert exc.error is not None
            return {"status": exc.status, "type": exc.error.type, "message": exc.error.message}
        return {"status": "?", "type": None, "message": None}

    @app.workflow("careless")
    async def careless(ctx: Context) -> None:
        await ctx.child(broken_ref)

    broken_ref = app.workflows.lookup("broken").fn
    async with app.worker(concurrency=4):
        caught = await app.submit("careful")
        assert await caught.result(timeout=20) == {
            "status": "failed",
            "type": "ValueError",
            "message": "no such page",
        }
        failed = await app.submit("careless")
        await wait_status(app, failed.id, TaskStatus.FAILED, timeout=20)
    task = await app.get(failed.id)
    assert task.error is not None and task.error.type == "ChildFailed"
    assert "no such page" in task.error.message
    (entry,) = await app.steps(failed.id)
    assert entry.status == StepStatus.FAILED and entry.error is not None


async def test_cancelling_a_parent_cancels_its_children_down_the_tree(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    _family(app)

    @app.workflow("keeper")
    async def keeper(ctx: Context) -> None:
        ctx.start_child("waits", {"depth": 0}, on_parent_end="abandon")
        await ctx.child("waits", {"depth": 1})

    async with app.worker(concurrency=8):
        root = await app.submit("keeper")
        await wait_status(app, root.id, TaskStatus.WAITING, timeout=20)
        assert (await app.get(root.id)).wait_reason == WaitReason.CHILD
        kids = await _children(app, root.id, 2)
        abandoned, cancelled = sorted(kids, key=lambda t: t.id)
        grandchild = (await _children(app, cancelled.id, 1))[0]
        await wait_status(app, grandchild.id, TaskStatus.WAITING, timeout=20)
        await app.cancel(root.id)
        await wait_status(app, cancelled.id, TaskStatus.CANCELLED, timeout=20)
        await wait_status(app, grandchild.id, TaskStatus.CANCELLED, timeout=20)
        assert (await app.get(abandoned.id)).status == TaskStatus.WAITING
        await app.signal(abandoned.id, "go", "still here")
        await wait_status(app, abandoned.id, TaskStatus.SUCCEEDED, timeout=20)


async def test_a_parent_that_ends_first_cancels_its_running_children(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    _family(app)
    release = asyncio.Event()

    @app.workflow("slow")
    async def slow(ctx: Context) -> None:
        await ctx.step("hold", release.wait)

    @app.workflow("leaver")
    async def leaver(ctx: Context) -> str:
        started = await ctx.start_child("slow").started()
        return started

    async with app.worker(concurrency=4, lease_ttl=1.5):
        parent = await app.submit("leaver")
        child_id = await parent.result(timeout=20)
        # The child was running: it is asked to stop, and its worker hears it.
        await wait_status(app, child_id, TaskStatus.CANCELLED, timeout=20)
        release.set()
    events = await app.store.list_events(task_id=child_id)
    assert any((e.data or {}).get("by") == f"parent:{parent.id}" for e in events)


async def test_a_replayed_parent_finds_its_children_again(make_app: Callable[[], Tether]) -> None:
    app = make_app()
    _family(app)

    @app.workflow("pair")
    async def pair(ctx: Context, n: int) -> Pair:
        return Pair(left=n, right=-n)

    pair_fn = app.workflows.lookup("pair").fn

    @app.workflow("restart")
    async def restart(ctx: Context) -> int:
        first = ctx.start_child(pair_fn, 3)
        await ctx.sleep(0.2)  # suspends: the replay starts the workflow from the top
        got = await first
        assert isinstance(got, Pair)
        return got.left + await ctx.child("double", 5)

    async with app.worker(concurrency=4):
        handle = await app.submit("restart")
        assert await handle.result(timeout=20) == 13
    children = await app.list_tasks(TaskFilter(parent_id=handle.id))
    assert sorted(c.workflow for c in children) == ["double", "pair"]


async def test_an_unknown_child_workflow_fails_at_the_call(make_app: Callable[[], Tether]) -> None:
    app = make_app()

    @app.workflow("typo")
    async def typo(ctx: Context) -> None:
        ctx.start_child("no-such-workflow")

    async with app.worker(concurrency=2):
        handle = await app.submit("typo")
        await wait_status(app, handle.id, TaskStatus.FAILED, timeout=20)
    task = await app.get(handle.id)
    assert task.error is not None and task.error.type == "UnknownWorkflow"


async def _children(app: Tether, parent_id: str, count: int) -> list:  # type: ignore[type-arg]
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        found = await app.list_tasks(TaskFilter(parent_id=parent_id))
        if len(found) >= count:
            return found
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{parent_id} has {len(found)} children, not {count}")
        await asyncio.sleep(0.02)


async def test_children_run_under_the_test_environment() -> None:
    app = Tether("sqlite://:memory:")
    _family(app)

    @app.workflow("tree")
    async def tree(ctx: Context) -> list[int]:
        await ctx.sleep(3600)
        return list(await asyncio.gather(*(ctx.start_child("double", i) for i in range(3))))

    async with TestEnvironment(app) as env:
        handle = await app.submit("tree")
        await env.run_until_idle()  # skips the hour, runs the children, then the parent
        assert await handle.result(timeout=1) == [0, 2, 4]
