"""A cap on lease expiries (ADR 64): a task whose worker is lost `max_lease_expiries`
times in a row, with no step recorded in between, is failed by the claim that finds it
(`WorkerLost`, decision `worker_lost`) instead of being run again. Claims are driven by
hand with explicit times: each lease expires before the next claim."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helpers import event_where
from tether import Context, TaskFailedError, TaskStatus, Tether
from tether.models import StepKind, StepRecord, StepStatus
from tether.store.base import StepWrite

PAIRS = [("work", 1)]


def _app(make_app: Callable[[], Tether]) -> Tether:
    app = make_app()

    @app.workflow("work")
    async def work(ctx: Context) -> None:
        raise AssertionError("driven by hand in this test")

    return app


async def _expire(app: Tether, t0: float, i: int, cap: int) -> list[str]:
    """Claim number `i`, by worker `w<i>` at `t0` + `i`, whose lease ends before the next
    one; the ids it took (recovered or new)."""
    t = t0 + i
    claimed = await app.store.claim(f"w{i}", ["default"], 10, t, t + 0.5, PAIRS, cap)
    return [c.task.id for c in claimed]


async def test_the_claim_after_the_last_allowed_expiry_fails_the_task(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    handle = await app.submit("work")
    t0 = app.clock.now() + 1
    # The first claim, then two recoveries: each run's worker vanished.
    for i in range(3):
        assert await _expire(app, t0, i, cap=3) == [handle.id]
    ended = app.store.hub.wait_task(handle.id)
    assert await _expire(app, t0, 3, cap=3) == []  # the third expiry: failed, not taken
    assert ended.done(), "this process's waiters heard of the failure from the claim"

    task = await app.get(handle.id)
    assert task.status == TaskStatus.FAILED and task.attempt == 3
    assert task.error is not None and task.error.type == "WorkerLost" and task.error.permanent
    assert "lost 3 times in a row" in task.error.message
    with pytest.raises(TaskFailedError, match="WorkerLost"):
        await handle.result(timeout=5)
    await event_where(app, handle.id, lambda e: e.type == "task.failed")  # visible (ADR 13)
    events = await app.store.list_events(task_id=handle.id)
    started = [(e.decision, e.worker) for e in events if e.type == "task.started"]
    assert started == [("claimed", "w0"), ("lease_expired", "w1"), ("lease_expired", "w2")]
    (failed,) = [e for e in events if e.type == "task.failed"]
    assert (failed.prior_status, failed.new_status, failed.attempt) == ("running", "failed", 3)
    assert (failed.decision, failed.error_class, failed.worker) == (
        "worker_lost",
        "WorkerLost",
        "w3",
    )
    assert failed.data == {
        "message": task.error.message,
        "lease_expiries": 3,
        "lost_worker": "w2",
    }
    assert await _expire(app, t0, 4, cap=3) == []  # and it stays failed
    # The claim's failure counts in the dead-letter queue like any other (the trigger).
    (group,) = await app.dlq.groups()
    assert (group.fingerprint, group.open, group.step) == (task.error.fingerprint, 1, None)
    assert (group.error_type, group.example_task_id) == ("WorkerLost", handle.id)


async def test_a_step_recorded_between_expiries_starts_the_count_again(
    make_app: Callable[[], Tether],
) -> None:
    """Expiries with progress between them are not a task crashing its worker: a long
    task may outlive a few machines."""
    app = _app(make_app)
    handle = await app.submit("work")
    t0 = app.clock.now() + 1
    for i in range(6):
        assert await _expire(app, t0, i, cap=2) == [handle.id]
        record = StepRecord(handle.id, i + 1, f"s{i}", StepKind.STEP, StepStatus.SUCCEEDED)
        assert await app.store.commit([StepWrite(handle.id, i + 1, record)], "w", t0 + i) == [True]
    task = await app.get(handle.id)
    assert (task.status, task.attempt, task.steps_done) == (TaskStatus.RUNNING, 6, 6)
    # Now no more steps: the second expiry in a row ends it.
    assert await _expire(app, t0, 6, cap=2) == [handle.id]
    assert await _expire(app, t0, 7, cap=2) == []
    assert (await app.get(handle.id)).status == TaskStatus.FAILED


async def test_no_limit_recovers_for_ever(make_app: Callable[[], Tether]) -> None:
    app = _app(make_app)
    handle = await app.submit("work")
    t0 = app.clock.now() + 1
    for i in range(8):
        assert await _expire(app, t0, i, cap=0) == [handle.id]
    assert (await app.get(handle.id)).attempt == 8


async def test_a_lost_task_takes_a_place_of_the_claim_batch(
    make_app: Callable[[], Tether],
) -> None:
    """A claim's limit counts the tasks it fails as lost with those it takes."""
    app = _app(make_app)
    worn = (await app.submit("work")).id
    t0 = app.clock.now() + 1
    assert await _expire(app, t0, 0, cap=2) == [worn]
    assert await _expire(app, t0, 1, cap=2) == [worn]  # leased until t0 + 1.5
    fresh = (await app.submit("work")).id
    (taken,) = await app.store.claim("w", ["default"], 5, t0 + 1.2, t0 + 1.7, PAIRS, 2)
    assert taken.task.id == fresh
    queued = (await app.submit("work")).id
    claimed = await app.store.claim("w", ["default"], 2, t0 + 2, t0 + 60, PAIRS, 2)
    assert [c.task.id for c in claimed] == [queued]  # and worn failed: no room for fresh
    assert (await app.get(worn)).status == TaskStatus.FAILED
    assert (await app.get(fresh)).status == TaskStatus.RUNNING
    (again,) = await app.store.claim("w2", ["default"], 2, t0 + 3, t0 + 60, PAIRS, 2)
    assert again.task.id == fresh and again.recovered
