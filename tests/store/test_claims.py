"""PostgreSQL claims in one statement (`postgres.batch.claim`, ADR 45); SQLite runs the
shared `sql.claim`. The two must take the same tasks in the same order, return the same
replay state and write the same events: this runs both on PostgreSQL, side by side."""

from __future__ import annotations

import dataclasses
from typing import Any

from conftest import require_postgres
from tether import Context, Tether
from tether.models import Approval, Event, StepKind, StepRecord, StepStatus, WaitReason
from tether.store import sql
from tether.store.base import Claimed, OpenApproval, StepWrite, Suspend
from tether.store.postgres import PostgresStore


async def _setup(app: Tether, queue: str, t0: float) -> list[str]:
    """Three tasks on `queue` as of `t0` + 10, in this order: one still queued, one whose
    timer is due (with a step log and a consumed signal), one whose worker's lease
    expired (with a step log, an unconsumed signal and an open approval)."""
    ids = [(await app.submit("work", f"{queue}{i}", queue=queue)).id for i in range(3)]
    store = app.store
    claimed = await store.claim("setup", [queue], 2, t0, t0 + 1, ["work"])
    due, lost = (c.task.id for c in claimed)
    (queued,) = set(ids) - {due, lost}
    sent = await app.signal(due, "go", {"n": 1})
    await app.signal(lost, "go", {"n": 2})

    def rec(task: str, seq: int, **kw: Any) -> StepRecord:
        return StepRecord(task, seq, f"s{seq}", StepKind.STEP, StepStatus.SUCCEEDED, **kw)

    approval = Approval(
        id=f"ap-{queue}",
        task_id=lost,
        tenant="default",
        seq=2,
        status="pending",
        risk="high",
        request={"summary": "look"},
        required=1,
        submitter=None,
        created_at=t0 + 0.5,
        expires_at=t0 + 100,
        workflow="work",
    )
    results = await store.commit(
        [
            StepWrite(due, 1, rec(due, 1, result="a", started_at=t0), consume_signal=sent.id),
            Suspend(due, 1, WaitReason.TIMER, t0 + 5),
            StepWrite(lost, 1, rec(lost, 1, result={"b": [1]}, started_at=t0, meta={"m": 1})),
            OpenApproval(lost, 1, approval),
        ],
        "setup",
        t0 + 0.5,
    )
    assert results == [True] * 4
    return [queued, due, lost]


def _shape(claimed: list[Claimed], ids: list[str]) -> list[Any]:
    """The claims with task ids replaced by the task's role, and no timestamps of rows
    the two scenarios wrote at different moments."""
    role = {task_id: str(i) for i, task_id in enumerate(ids)}
    out = []
    for c in claimed:
        t = c.task
        out.append(
            (
                role[t.id],
                t.status,
                t.attempt,
                t.steps_done,
                t.current_step,
                t.wait_reason,
                t.started_at,
                c.recovered,
                [dataclasses.replace(s, task_id="") for s in c.steps.values()],
                [(s.name, s.payload) for s in c.signals],
                [dataclasses.replace(a, id="", task_id="") for a in c.approvals.values()],
            )
        )
    return out


def _event(e: Event) -> tuple[Any, ...]:
    at = e.at if e.type == "task.started" else None  # signals were sent at different times
    return (e.type, e.prior_status, e.new_status, e.attempt, e.worker, e.decision, at)


async def test_the_one_statement_claim_does_what_the_shared_claim_does(pg_url: str) -> None:
    require_postgres()
    app = Tether(pg_url)

    @app.workflow("work")
    async def work(ctx: Context, tag: str) -> None:
        raise AssertionError("driven by hand in this test")

    await app.open()
    try:
        store = app.store
        assert isinstance(store, PostgresStore)
        t0 = app.clock.now() + 1  # every task is due
        fast_ids = await _setup(app, "fast", t0)
        slow_ids = await _setup(app, "slow", t0)
        now = t0 + 10
        fast = await store.claim("w", ["fast"], 10, now, now + 60, ["work"])

        async def shared(conn: sql.Conn) -> list[Claimed]:
            return await sql.claim(conn, sql.POSTGRES, "w", ["slow"], 10, now, now + 60, ["work"])

        slow = await store._run(shared)
        assert len(fast) == 3
        assert _shape(fast, fast_ids) == _shape(slow, slow_ids)
        for f, s in zip(fast_ids, slow_ids, strict=True):
            fe = await app.store.list_events(task_id=f)
            se = await app.store.list_events(task_id=s)
            assert [_event(e) for e in fe] == [_event(e) for e in se]
    finally:
        await app.close()
