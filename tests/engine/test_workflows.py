"""Workflows, steps and replay, on every backend with a real worker."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from helpers import event_where, wait_status
from tether import (
    Context,
    InputValidationError,
    RetryPolicy,
    TaskFailedError,
    TaskStatus,
    Tether,
    UnknownWorkflow,
    current_step,
)
from tether.models import TaskFilter
from tether.store.base import Finish, StepWrite


class Order(BaseModel):
    sku: str
    qty: int


class Quote(BaseModel):
    total: float


async def test_steps_are_checkpointed_and_replayed_with_gather(
    make_app: Callable[[], Tether],
) -> None:
    """A gather of steps, a suspension, then replay: recorded results come back in the
    same positions and no finished step runs again."""
    app = make_app()
    runs: Counter[str] = Counter()

    @app.step
    async def fetch(url: str) -> str:
        runs[url] += 1
        await asyncio.sleep(random.uniform(0, 0.02))  # finish out of order
        return f"<{url}>"

    @app.workflow("crawl")
    async def crawl(ctx: Context, urls: list[str]) -> dict[str, Any]:
        pages = await asyncio.gather(*(fetch(u) for u in urls))
        go = await ctx.wait_for_signal("go")
        return {"pages": pages, "go": go}

    urls = [f"u{i}" for i in range(8)]
    async with app.worker(concurrency=10, poll_interval=0.05):
        handle = await app.submit("crawl", {"urls": urls})
        await wait_status(app, handle.id, TaskStatus.WAITING)
        steps = await app.steps(handle.id)
        assert [s.name for s in steps[:8]] == ["fetch"] * 8
        # sequence numbers were taken at call time: seq i belongs to urls[i-1]
        assert [s.result for s in steps[:8]] == [f"<{u}>" for u in urls]
        await app.signal(handle.id, "go", {"ok": True})
        result = await handle.result(timeout=10)
    assert result == {"pages": [f"<{u}>" for u in urls], "go": {"ok": True}}
    assert runs == Counter(urls), "a finished step ran again on replay"


async def test_non_determinism_parks_the_task_with_a_reason(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    which = {"name": "first"}

    @app.workflow("shifty")
    async def shifty(ctx: Context) -> str:
        await ctx.step(which["name"], lambda: 1)
        await ctx.wait_for_signal("go")
        return "done"

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("shifty")
        await wait_status(app, handle.id, TaskStatus.WAITING)
        which["name"] = "second"  # the code changed under a waiting task
        await app.signal(handle.id, "go")
        task = await handle.wait(timeout=10)
    assert task.status == TaskStatus.FAILED
    assert task.error is not None and task.error.type == "NonDeterminismError"
    assert "'first'" in task.error.message and "'second'" in task.error.message
    failed = await event_where(app, handle.id, lambda e: e.type == "task.failed")
    assert failed.decision == "non_determinism"


async def test_now_uuid_random_are_recorded(make_app: Callable[[], Tether]) -> None:
    app = make_app()
    seen: list[tuple[Any, ...]] = []

    @app.workflow("values")
    async def values(ctx: Context) -> list[str]:
        captured = (ctx.now(), ctx.uuid(), ctx.random())
        seen.append(captured)
        await ctx.wait_for_signal("go")
        return [str(x) for x in captured]

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("values")
        await wait_status(app, handle.id, TaskStatus.WAITING)
        await app.signal(handle.id, "go")
        result = await handle.result(timeout=10)
    assert len(seen) == 2, "the workflow should have run twice (first run, replay)"
    assert seen[0] == seen[1]
    assert result == [str(x) for x in seen[0]]


async def test_typed_input_and_model_results_survive_replay(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()

    @app.step
    async def price(order: Order) -> Quote:
        return Quote(total=order.qty * 2.5)

    replays: list[Quote] = []

    @app.workflow("quote")
    async def quote(ctx: Context, order: Order) -> float:
        q = await price(order)
        replays.append(q)
        await ctx.wait_for_signal("go")
        return q.total

    with pytest.raises(InputValidationError) as info:
        app.new_task("quote", {"sku": "x", "qty": "many"})
    assert "qty" in str(info.value)
    with pytest.raises(UnknownWorkflow):
        await app.submit("no-such-workflow", {})
    assert await app.list_tasks(TaskFilter()) == [], "bad submissions wrote nothing"

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("quote", Order(sku="x", qty=4))
        await wait_status(app, handle.id, TaskStatus.WAITING)
        await app.signal(handle.id, "go")
        assert await handle.result(timeout=10) == 10.0
    assert all(isinstance(q, Quote) for q in replays) and len(replays) == 2


async def test_unserializable_step_result_fails_the_task_naming_the_step(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()

    @app.workflow("bad")
    async def bad(ctx: Context) -> None:
        await ctx.step("make_lock", threading.Lock)

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("bad")
        with pytest.raises(TaskFailedError) as info:
            await handle.result(timeout=10)
    assert info.value.step == "make_lock"
    task = await app.get(handle.id)
    assert task.error is not None and task.error.type == "UnserializableResult"
    assert task.error.permanent


async def test_sync_steps_run_in_threads_and_keys_are_stable(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    seen: list[tuple[str, str]] = []
    attempts = Counter[str]()

    def side_effect(tag: str) -> str:
        info = current_step()
        assert info is not None
        attempts[tag] += 1
        seen.append((threading.current_thread().name, info.idempotency_key))
        if attempts[tag] < 3:
            raise ConnectionError("flaky network")
        return tag

    @app.workflow("effects")
    async def effects(ctx: Context) -> str:
        return await ctx.step(
            "write", side_effect, "a", retry=RetryPolicy(max_attempts=5, initial_interval=0.01)
        )

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("effects")
        assert await handle.result(timeout=10) == "a"
    assert len(seen) == 3
    assert all(name.startswith("tether-step") for name, _ in seen)
    assert {key for _, key in seen} == {f"{handle.id}:1"}


async def test_a_waiter_takes_an_end_committed_in_this_process_without_reading_again(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    gate = asyncio.Event()

    @app.workflow("gated")
    async def gated(ctx: Context, fail: bool) -> dict[str, int]:
        await gate.wait()
        if fail:
            raise ValueError("no")
        return {"n": 1}

    ok, bad = await app.submit("gated", False), await app.submit("gated", True)
    reads = 0
    both_read = asyncio.Event()
    real_get_task = app.store.get_task

    async def counting_get_task(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        task = await real_get_task(*args, **kwargs)
        reads += 1
        if reads == 2:
            both_read.set()
        return task

    app.store.get_task = counting_get_task  # type: ignore[method-assign]
    async with app.worker(poll_interval=0.05):
        waiters = asyncio.gather(
            ok.result(timeout=10), bad.result(timeout=10), return_exceptions=True
        )
        await asyncio.wait_for(both_read.wait(), 5)  # each has seen its task unfinished
        gate.set()
        value, error = await waiters
    assert value == {"n": 1}
    assert isinstance(error, TaskFailedError) and error.error_type == "ValueError"
    assert reads == 2  # one read each, before the end; the end came with the commit


async def test_a_finished_step_is_durable_while_a_sibling_or_the_workflow_still_waits(
    make_app: Callable[[], Tether],
) -> None:
    """A step's result may be held for the task's completion only while nothing else
    runs (ADR 44): beside a running sibling, or while the workflow awaits something
    that is not durable, it is committed without waiting for either."""
    app = make_app()
    sibling_may_end = asyncio.Event()
    slow_started = asyncio.Event()
    workflow_may_end = asyncio.Event()

    async def slow() -> str:
        slow_started.set()
        await sibling_may_end.wait()
        return "slow"

    @app.workflow("branches")
    async def branches(ctx: Context) -> list[str]:
        async def fast() -> str:
            await slow_started.wait()  # ends while its sibling runs
            return "fast"

        return list(await asyncio.gather(ctx.step("fast", fast), ctx.step("slow", slow)))

    @app.workflow("lingers")
    async def lingers(ctx: Context) -> str:
        value: str = await ctx.step("only", lambda: "done")
        await workflow_may_end.wait()  # not durable: the held result must not wait for it
        return value

    async def committed(task_id: str, name: str) -> None:
        deadline = asyncio.get_running_loop().time() + 5
        while not any(s.name == name for s in await app.steps(task_id)):
            assert asyncio.get_running_loop().time() < deadline, f"{name} never committed"
            await asyncio.sleep(0.01)

    async with app.worker(poll_interval=0.05):
        both = await app.submit("branches")
        await committed(both.id, "fast")  # while "slow" still runs
        sibling_may_end.set()
        assert await both.result(timeout=10) == ["fast", "slow"]

        linger = await app.submit("lingers")
        await committed(linger.id, "only")  # while the workflow still awaits
        workflow_may_end.set()
        assert await linger.result(timeout=10) == "done"
    assert [s.name for s in await app.steps(linger.id)] == ["only"]


async def test_tasks_submitted_beside_a_worker_with_free_slots_start_without_a_claim(
    make_app: Callable[[], Tether],
) -> None:
    """Eager dispatch (ADR 47): a submission in the worker's process is created already
    claimed for it, up to its free slots; the rest are claimed as usual."""
    app = make_app()
    gate = asyncio.Event()
    most = 0

    @app.workflow("gated")
    async def gated(ctx: Context, n: int) -> int:
        nonlocal most
        most = max(most, worker.active)
        await gate.wait()
        return n

    async with app.worker(concurrency=3, poll_interval=0.05) as worker:
        handles = await app.submit_many("gated", list(range(10)))
        assert [h.initial.status for h in handles[:4]] == ["running"] * 3 + ["queued"]
        later = await app.submit("gated", 99, run_at=app.clock.now() + 3600)
        assert later.initial.status == TaskStatus.QUEUED  # not due: never eager
        again = await app.submit("gated", 0, idempotency_key="k")
        same = await app.submit("gated", 0, idempotency_key="k")
        assert not same.created and same.id == again.id
        assert worker._reserved == 0
        gate.set()
        results = await asyncio.gather(*(h.result(timeout=10) for h in [*handles, again]))
        assert results == [*range(10), 0]
    assert most <= 3
    decisions = []
    for h in handles:
        events = await app.store.list_events(task_id=h.id)
        decisions += [e.decision for e in events if e.type == "task.started"]
    assert decisions.count("eager") == 3 and decisions.count("claimed") == 7

    plain = make_app()

    @plain.workflow("noop")
    async def noop(ctx: Context) -> None:
        return None

    async with plain.worker(poll_interval=0.05, eager=False):
        handle = await plain.submit("noop")
        assert handle.initial.status == TaskStatus.QUEUED
        await handle.result(timeout=10)
    started = await event_where(plain, handle.id, lambda e: e.type == "task.started")
    assert started.decision == "claimed"


async def test_a_few_free_slots_of_a_busy_worker_do_not_idle(
    make_app: Callable[[], Tether],
) -> None:
    """A busy worker batches its claims (it waits for a quarter of its slots), but only
    for a moment: one free slot beside seven busy ones still takes queued work."""
    app = make_app()
    gates = {n: asyncio.Event() for n in range(8)}

    @app.workflow("hold")
    async def hold(ctx: Context, n: int) -> int:
        await gates[n].wait()
        return n

    async with app.worker(concurrency=8, poll_interval=0.05, eager=False) as worker:
        held = await app.submit_many("hold", list(range(8)))
        for h in held:
            await wait_status(app, h.id, TaskStatus.RUNNING)
        gates[0].set()
        assert await held[0].result(timeout=10) == 0
        assert worker.active == 7
        newcomer = await app.submit("hold", 7)  # n=7 is still gated: it must start
        await wait_status(app, newcomer.id, TaskStatus.RUNNING, timeout=2)
        for gate in gates.values():
            gate.set()
        assert await newcomer.result(timeout=10) == 7


async def test_branches_after_a_held_step_all_wait_for_its_commit(
    make_app: Callable[[], Tether],
) -> None:
    """Held results (ADR 44): in `gather(b, c)` after a held step `a`, neither b nor c
    runs before a's record is committed (review finding: c once skipped the wait)."""
    app = make_app()
    committed: set[str] = set()
    seen: dict[str, bool] = {}
    real_commit = app.store.commit

    async def slow_commit(ops: list[Any], worker: str, now: float) -> list[bool]:
        names = {op.record.name for op in ops if isinstance(op, StepWrite)}
        if "a" in names:
            await asyncio.sleep(0.2)
        result = await real_commit(ops, worker, now)
        committed.update(names)
        return result

    app.store.commit = slow_commit  # type: ignore[method-assign]

    def record(name: str) -> str:
        seen[name] = "a" in committed
        return name

    @app.workflow("fan")
    async def fan(ctx: Context) -> list[str]:
        await ctx.step("a", record, "a")
        return list(await asyncio.gather(ctx.step("b", record, "b"), ctx.step("c", record, "c")))

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("fan")
        assert await handle.result(timeout=10) == ["b", "c"]
    assert seen == {"a": False, "b": True, "c": True}


async def test_a_task_does_not_end_when_an_earlier_step_result_failed_to_commit(
    make_app: Callable[[], Tether],
) -> None:
    """A held result committed on its own (after HOLD_LIMIT) that the database refuses
    must keep the task from ending, as a step write that failed always did."""
    app = make_app()
    real_commit = app.store.commit
    refused = asyncio.Event()

    async def refusing_commit(ops: list[Any], worker: str, now: float) -> list[bool]:
        if any(isinstance(op, StepWrite) and op.record.name == "a" for op in ops):
            refused.set()  # the workflow returns now; the refusal comes after its end
            await asyncio.sleep(0.1)
            raise ValueError("refused by the test")
        return await real_commit(ops, worker, now)

    app.store.commit = refusing_commit  # type: ignore[method-assign]

    @app.workflow("lingering")
    async def lingering(ctx: Context) -> str:
        await ctx.step("a", lambda: "a")
        await refused.wait()  # not durable: the held result is committed on its own
        return "done"

    async with app.worker(poll_interval=0.05) as worker:
        handle = await app.submit("lingering")
        await asyncio.wait_for(refused.wait(), 5)
        deadline = asyncio.get_running_loop().time() + 5
        while worker.active or worker._concluding:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert (await app.get(handle.id)).status == TaskStatus.RUNNING  # never ended
        assert await app.steps(handle.id) == []
        await app.cancel(handle.id)


async def test_stalled_commits_stop_the_claiming(make_app: Callable[[], Tether]) -> None:
    """Concluding runs give their slot back (ADR 46), but at most `concurrency` of them:
    while outcomes cannot commit, a worker holds at most 2 x concurrency leases."""
    app = make_app()
    real_commit = app.store.commit
    release = asyncio.Event()

    async def stalled_commit(ops: list[Any], worker: str, now: float) -> list[bool]:
        if any(isinstance(op, Finish) for op in ops):
            await release.wait()
        return await real_commit(ops, worker, now)

    app.store.commit = stalled_commit  # type: ignore[method-assign]

    @app.workflow("quick")
    async def quick(ctx: Context, n: int) -> int:
        return n

    async with app.worker(concurrency=2, poll_interval=0.02, eager=False) as worker:
        handles = await app.submit_many("quick", list(range(20)))
        peak = 0
        loop = asyncio.get_running_loop()
        until = loop.time() + 0.5
        try:
            while loop.time() < until:  # a bounded look: unbounded claiming shows at once
                peak = max(peak, len(worker._runs))
                await asyncio.sleep(0.005)
        finally:
            release.set()
        assert peak == 4
        assert await asyncio.gather(*(h.result(timeout=10) for h in handles)) == list(range(20))


async def test_correlation_id_defaults_to_the_task_id(make_app: Callable[[], Tether]) -> None:
    """DESIGN ("Core model"): `correlation_id` (given, else the id), for single and batch
    submissions, and a re-run keeps the original's."""
    app = make_app()

    @app.workflow("noop")
    async def noop(ctx: Context, n: int) -> int:
        return n

    plain = await app.submit("noop", 0)
    given = await app.submit("noop", 0, correlation_id="order-9")
    many = await app.submit_many("noop", [1, 2])
    for handle in (plain, *many):
        task = await app.get(handle.id)
        assert task.correlation_id == task.id
    assert (await app.get(given.id)).correlation_id == "order-9"
    found = await app.list_tasks(TaskFilter(correlation_id=plain.id))
    assert [t.id for t in found] == [plain.id], "the default is searchable like a given one"
    async with app.worker(poll_interval=0.05):
        await plain.result(timeout=10)
    rerun = await app.rerun(plain.id)
    assert (await app.get(rerun.id)).correlation_id == plain.id
