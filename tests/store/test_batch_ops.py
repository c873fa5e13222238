"""Both drivers apply a committer batch set-based (a few statements per batch, not per
operation: `tether.store.sqlite.batch`, `tether.store.postgres.batch`). Whatever they do
must be exactly what the shared logic (`sql.apply_ops`, one operation at a time) does:
same results, same rows, same events in the same order per task."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from helpers import all_events
from tether import Context, Tether
from tether.models import (
    AttemptError,
    RetryDecision,
    StepKind,
    StepRecord,
    StepStatus,
    TaskError,
    TaskStatus,
    WaitReason,
)
from tether.store import sql
from tether.store.base import Finish, Op, Release, StepWrite, Suspend
from tether.store.sqlbase import SQLStore
from tether.store.sqlite import SQLiteStore


def _hand_driven(app: Tether) -> Tether:
    """`app` with the workflow "work", whose tasks these tests claim and drive by hand."""

    @app.workflow("work")
    async def work(ctx: Context, tag: str) -> None:
        raise AssertionError("driven by hand in this test")

    return app


async def _scenario(app: Tether, tag: str) -> tuple[list[str], list[Op]]:
    """Six running tasks and one batch of operations on them, covering every kind."""
    handles = [await app.submit("work", f"{tag}{i}") for i in range(6)]
    ids = [h.id for h in handles]
    now = app.clock.now()
    claimed = await app.store.claim("w", ["default"], 6, now, now + 60, [("work", 1)])
    assert sorted(c.task.id for c in claimed) == sorted(ids)
    signal = await app.signal(ids[1], "go", {"n": 1})
    last_word = await app.signal(ids[5], "go", {"n": 6})
    t1, t2, t3, t4, t5, t6 = ids

    def rec(
        task: str, seq: int, status: StepStatus = StepStatus.SUCCEEDED, **kw: Any
    ) -> StepRecord:
        return StepRecord(task, seq, f"s{seq}", StepKind.STEP, status, started_at=1.0, **kw)

    boom = TaskError("ValueError", "boom", "fp1", step="s1")
    tried = (_attempt_error(1, RetryDecision.RETRY_BACKOFF),)
    tried2 = (*tried, _attempt_error(2, RetryDecision.RETRY))
    ops: list[Op] = [
        # T1: a step, then a retry's pending entry and its outcome in the same batch.
        StepWrite(t1, 1, rec(t1, 1, result={"a": [1, 2]}, finished_at=2.0, meta={"m": 1})),
        StepWrite(
            t1, 1, rec(t1, 2, StepStatus.PENDING, error=boom, wake_at=5.0, attempt_errors=tried)
        ),
        StepWrite(t2, 1, rec(t2, 1, result="x"), consume_signal=signal.id),
        # T3: a stale writer (another attempt): fenced off.
        StepWrite(t3, 7, rec(t3, 1, result=0)),
        StepWrite(  # its outcome carries one more failed attempt than its pending entry
            t1, 1, rec(t1, 2, attempts=3, result=None, finished_at=3.0, attempt_errors=tried2)
        ),
        Finish(t2, 1, TaskStatus.SUCCEEDED, '"done"', steps=(StepWrite(t2, 1, rec(t2, 2)),)),
        Finish(t3, 7, TaskStatus.SUCCEEDED, "1", steps=(StepWrite(t3, 7, rec(t3, 2)),)),
        StepWrite(t4, 1, rec(t4, 1, result=4)),
        Suspend(t4, 1, WaitReason.TIMER, 1e12),
        Release(t5, 1),
        # T6: a completion carrying a step result that consumed a signal.
        Finish(
            t6,
            1,
            TaskStatus.FAILED,
            None,
            boom,
            decision="permanent_error",
            steps=(StepWrite(t6, 1, rec(t6, 1, result="y"), consume_signal=last_word.id),),
        ),
    ]
    return ids, ops


def _attempt_error(attempt: int, decision: RetryDecision) -> AttemptError:
    give_up = decision == RetryDecision.GIVE_UP
    return AttemptError(
        attempt=attempt,
        type="ValueError",
        message="boom",
        traceback='Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom\n',
        started_at=1.0,
        finished_at=1.5,
        transient=not give_up,
        classified_by="default" if give_up else "Transient",
        decision=decision,
        reason="permanent" if give_up else "backoff",
        retry_in=None if give_up else 0.5,
    )


async def _state(app: Tether, ids: list[str]) -> list[Any]:
    """What the database holds about `ids`, with the task ids replaced by positions."""
    out: list[Any] = []
    for i, task_id in enumerate(ids):
        task = await app.get(task_id)
        out.append(
            (
                i,
                task.status,
                task.result,
                task.error,
                task.steps_done,
                task.current_step,
                task.attempt,
                task.wait_reason,
            )
        )
        out.append([dataclasses.replace(s, task_id=str(i)) for s in await app.steps(task_id)])
        events = await all_events(app.store, task_id)
        out.append(
            [
                (
                    e.type,
                    e.prior_status,
                    e.new_status,
                    e.attempt,
                    e.step,
                    e.error_class,
                    e.decision,
                    {k: v for k, v in (e.data or {}).items() if k != "signal_id"},  # ids differ
                )
                for e in events
            ]
        )
    return out


async def test_set_based_batches_do_what_the_shared_logic_does(
    make_app: Callable[[], Tether],
) -> None:
    app = _hand_driven(make_app())
    await app.open()
    store = app.store
    assert isinstance(store, SQLStore)
    fast_ids, fast_ops = await _scenario(app, "fast")
    slow_ids, slow_ops = await _scenario(app, "slow")
    now = app.clock.now()
    fast = await store._run_ops(fast_ops, "w", now)
    slow = await SQLStore._run_ops(store, slow_ops, "w", now)  # the shared logic
    assert fast == slow == [True, True, True, False, True, True, False, True, True, True, True]
    assert await _state(app, fast_ids) == await _state(app, slow_ids)

    async def consumed(conn: Any) -> list[Any]:
        rows = await conn.fetchall(
            "SELECT consumed_seq FROM signals WHERE task_id IN (%s, %s, %s, %s) ORDER BY id",
            (fast_ids[1], fast_ids[5], slow_ids[1], slow_ids[5]),
        )
        return [r["consumed_seq"] for r in rows]

    assert await store._run(consumed) == [1, 1, 1, 1]


async def test_many_completions_carrying_steps_do_what_the_shared_logic_does(
    make_app: Callable[[], Tether],
) -> None:
    """Twelve completions carrying step results: past `SMALL` rows, so PostgreSQL reads
    them as one JSON row source. Retries, a failed step, consumed signals, a stale
    attempt and a completion without steps among them."""
    app = _hand_driven(make_app())
    await app.open()
    store = app.store
    assert isinstance(store, SQLStore)

    async def batch(tag: str) -> tuple[list[str], list[Op]]:
        ids = await _running(app, tag, 12)
        sigs = [await app.signal(ids[i], "go", {"i": i}) for i in (2, 5)]
        boom = TaskError("ValueError", "boom", "fp2", step="s2")
        pending = StepRecord(
            "",
            2,
            "s2",
            StepKind.STEP,
            StepStatus.PENDING,
            error=boom,
            attempt_errors=(_attempt_error(1, RetryDecision.RETRY),),
        )
        ops: list[Op] = []
        for i, t in enumerate(ids):
            steps = (
                StepWrite(t, 1, _record(t, 1, result=i, started_at=1.0)),
                StepWrite(t, 1, dataclasses.replace(pending, task_id=t)),
                StepWrite(t, 1, _record(t, 2, attempts=2, result=None, started_at=2.0)),
            )
            if i in (2, 5):
                sig = sigs[(2, 5).index(i)]
                steps = (StepWrite(t, 1, _record(t, 1, result="sig"), consume_signal=sig.id),)
            if i == 7:
                failed = dataclasses.replace(
                    pending,
                    task_id=t,
                    seq=1,
                    status=StepStatus.FAILED,
                    attempt_errors=(
                        *pending.attempt_errors,
                        _attempt_error(2, RetryDecision.GIVE_UP),
                    ),
                )
                ops.append(
                    Finish(t, 1, TaskStatus.FAILED, None, boom, steps=(StepWrite(t, 1, failed),))
                )
                continue
            attempt = 9 if i == 9 else 1  # a stale run's late completion
            steps = tuple(dataclasses.replace(w, attempt=attempt) for w in steps)
            ops.append(
                Finish(t, attempt, TaskStatus.SUCCEEDED, str(i), steps=() if i == 11 else steps)
            )
        return ids, ops

    fast_ids, fast_ops = await batch("fast")
    slow_ids, slow_ops = await batch("slow")
    now = app.clock.now()
    fast = await store._run_ops(fast_ops, "w", now)
    slow = await SQLStore._run_ops(store, slow_ops, "w", now)
    assert fast == slow == [i != 9 for i in range(12)]
    assert await _state(app, fast_ids) == await _state(app, slow_ids)

    async def consumed(conn: Any) -> list[Any]:
        rows = await conn.fetchall("SELECT task_id, consumed_seq FROM signals ORDER BY id", ())
        return [r["consumed_seq"] for r in rows if r["task_id"] in fast_ids + slow_ids]

    assert await store._run(consumed) == [1, 1, 1, 1]


async def _running(app: Tether, tag: str, n: int) -> list[str]:
    handles = [await app.submit("work", f"{tag}{i}") for i in range(n)]
    now = app.clock.now()
    claimed = await app.store.claim("w", ["default"], n, now, now + 60, [("work", 1)])
    assert sorted(c.task.id for c in claimed) == sorted(h.id for h in handles)
    return [h.id for h in handles]


def _record(task: str, seq: int, **kw: Any) -> StepRecord:
    return StepRecord(task, seq, f"s{seq}", StepKind.STEP, StepStatus.SUCCEEDED, **kw)


def _irregular(ids: list[str]) -> list[Op]:
    """Batches the set-based path must not reorder: a completion then the hand-back of a
    stopping worker, a record written after a hand-back, a stale attempt's late write
    before the live run's."""
    t1, t2, t3 = ids
    return [
        Finish(t1, 1, TaskStatus.SUCCEEDED, "1", steps=(StepWrite(t1, 1, _record(t1, 1)),)),
        Release(t1, 1),
        Release(t2, 1),
        StepWrite(t2, 1, _record(t2, 1)),
        StepWrite(t3, 7, _record(t3, 1, result="stale")),
        StepWrite(t3, 1, _record(t3, 1, result="live")),
    ]


def _infinite(ids: list[str]) -> list[Op]:
    """A wait without end (`wake_at` = infinity), which JSON cannot carry."""
    (t1,) = ids
    wait = StepRecord(t1, 1, "forever", StepKind.SLEEP, StepStatus.PENDING, wake_at=math.inf)
    return [StepWrite(t1, 1, wait), StepWrite(t1, 1, _record(t1, 2, started_at=1.0))]


@pytest.mark.parametrize(
    ("build", "size", "expected"),
    [(_irregular, 3, [True, False, True, False, False, True]), (_infinite, 1, [True, True])],
    ids=["irregular", "infinite"],
)
async def test_batches_the_set_based_path_cannot_reorder_keep_their_order(
    make_app: Callable[[], Tether],
    build: Callable[[list[str]], list[Op]],
    size: int,
    expected: list[bool],
) -> None:
    app = _hand_driven(make_app())
    await app.open()
    store = app.store
    assert isinstance(store, SQLStore)
    fast_ids = await _running(app, "fast", size)
    slow_ids = await _running(app, "slow", size)
    now = app.clock.now()
    assert await store._run_ops(build(fast_ids), "w", now) == expected
    assert await SQLStore._run_ops(store, build(slow_ids), "w", now) == expected
    assert await _state(app, fast_ids) == await _state(app, slow_ids)
    if build is _infinite:
        assert (await app.steps(fast_ids[0]))[0].wake_at == math.inf


async def test_a_sqlite_claim_walks_the_queue_index_in_claim_order(tmp_path: Path) -> None:
    """With one queue, the queued-work scan needs no sort: it reads `tasks_fair` in
    claim order and stops at the limit, whatever the backlog."""
    app = _hand_driven(Tether(f"sqlite:///{tmp_path}/t.db"))
    try:
        await app.submit_many("work", [str(i) for i in range(200)])
        store = app.store
        assert isinstance(store, SQLiteStore)
        seen: list[tuple[str, Sequence[Any]]] = []

        class Recording:
            def __init__(self, conn: sql.Conn) -> None:
                self._conn = conn

            async def fetchall(self, text: str, params: Sequence[Any] = ()) -> list[sql.Row]:
                seen.append((text, params))
                return await self._conn.fetchall(text, params)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._conn, name)

        now = app.clock.now()
        outcome = await store._run(
            lambda c: sql.claim(
                Recording(c), sql.SQLITE, "w", ["default"], 10, now, now + 30, [("work", 1)]
            )
        )
        assert len(outcome.claimed) == 10
        text, params = next(s for s in seen if "status = 'queued'" in s[0])
        plan = await store._run_raw(
            lambda conn: conn.execute(
                "EXPLAIN QUERY PLAN " + text.replace("%s", "?"), params
            ).fetchall()
        )
        details = [row[3] for row in plan]
        assert any("tasks_fair" in d for d in details), details
        assert not any("TEMP B-TREE" in d for d in details), details
    finally:
        await app.close()


async def test_a_transaction_sqlite_rolled_back_itself_fails_all_its_units(
    tmp_path: Path,
) -> None:
    """When SQLite rolls a whole transaction back on its own (a full disk, an I/O error),
    every unit in it fails, and the database thread goes on serving."""
    app = _hand_driven(Tether(f"sqlite:///{tmp_path}/t.db"))
    try:
        handle = await app.submit("work", "x")
        store = app.store
        assert isinstance(store, SQLiteStore)
        gate = threading.Event()
        blocker = asyncio.ensure_future(store._run_raw(lambda conn: gate.wait(10)))

        async def write(conn: sql.Conn) -> int:
            return await conn.execute("UPDATE tasks SET priority = 5 WHERE id = %s", (handle.id,))

        async def fail(conn: sql.Conn) -> int:
            await conn.execute("ROLLBACK")  # what SQLite does itself on SQLITE_FULL/IOERR
            raise sqlite3.OperationalError("disk I/O error")

        # Both queue up behind the blocker, so they share one transaction.
        units = [asyncio.ensure_future(store._run(write)), asyncio.ensure_future(store._run(fail))]
        await asyncio.sleep(0)
        gate.set()
        await blocker
        done = await asyncio.wait_for(asyncio.gather(*units, return_exceptions=True), 10)
        assert all(isinstance(r, sqlite3.OperationalError) for r in done), done
        assert (await app.get(handle.id)).priority == 0  # nothing of it was kept
    finally:
        await app.close()


async def test_claims_take_higher_priority_first_then_older(
    make_app: Callable[[], Tether],
) -> None:
    """Which tasks a claim takes: higher priority first, then the ones due earlier."""
    app = _hand_driven(make_app())
    await app.open()
    low = await app.submit("work", "low", priority=0)
    high = await app.submit("work", "high", priority=5)
    mid_old = await app.submit("work", "mid-old", priority=1)
    mid_new = await app.submit("work", "mid-new", priority=1)
    now = app.clock.now()
    first = await app.store.claim("w", ["default"], 2, now, now + 60, [("work", 1)])
    assert {c.task.id for c in first} == {high.id, mid_old.id}
    rest = await app.store.claim("w", ["default"], 5, now, now + 60, [("work", 1)])
    assert {c.task.id for c in rest} == {mid_new.id, low.id}


async def test_a_claim_on_several_queues_takes_the_best_of_all(
    make_app: Callable[[], Tether],
) -> None:
    """Several queues are scanned one by one (ADR 54), yet the claim takes the same tasks
    as one ordered scan of all: the highest priorities of any queue, then the oldest."""
    app = _hand_driven(make_app())
    await app.open()
    a_old = await app.submit("work", "a-old", queue="a")
    b_high = await app.submit("work", "b-high", queue="b", priority=3)
    await app.submit("work", "c-high", queue="c", priority=9)  # a queue not served
    a_high = await app.submit("work", "a-high", queue="a", priority=3)
    b_new = await app.submit("work", "b-new", queue="b")
    now = app.clock.now()
    first = await app.store.claim("w", ["a", "b"], 3, now, now + 60, [("work", 1)])
    assert {c.task.id for c in first} == {b_high.id, a_high.id, a_old.id}
    rest = await app.store.claim("w", ["a", "b"], 3, now, now + 60, [("work", 1)])
    assert {c.task.id for c in rest} == {b_new.id}
