"""PostgreSQL claims in one statement (`postgres.batch.claim`, ADR 45); SQLite runs the
shared `sql.claim`. The two must take the same tasks, fail the same lost ones, return
the same replay state and write the same events: this runs both on PostgreSQL, side by
side."""

from __future__ import annotations

import dataclasses
from typing import Any

from conftest import require_postgres
from helpers import event_where
from tether import Context, Tether
from tether.models import Approval, Event, StepKind, StepRecord, StepStatus, Task, WaitReason
from tether.store import sql
from tether.store.base import ClaimOutcome, OpenApproval, StepWrite, Suspend
from tether.store.postgres import PostgresStore, batch
from tether.store.postgres.conn import PgConn

PAIRS = [("work", 1)]
CAP = 2
"""`max_lease_expiries` of the compared claims: `worn` reaches it, the others do not."""


async def _setup(app: Tether, queue: str, t0: float) -> dict[str, str]:
    """Five tasks on `queue` as of `t0` + 10, by role: `queued` (still queued), `due`
    (its timer is due; a step log and a consumed signal), `lost` (its worker's lease
    expired once: a step log, an unconsumed signal and an open approval), `worn` (its
    lease expired twice with no step in between: the claim fails it) and `progressed`
    (expired twice too, but a step was recorded between: its count starts again)."""
    store = app.store
    early = [(await app.submit("work", f"{queue}-early{i}", queue=queue)).id for i in range(2)]
    first = await store.claim("setup", [queue], 2, t0, t0 + 0.5, PAIRS)
    again = await store.claim("setup", [queue], 2, t0 + 0.75, t0 + 1.25, PAIRS, CAP)
    assert {c.task.id for c in first} == {c.task.id for c in again} == set(early)
    assert all(c.recovered for c in again)
    worn, progressed = early

    def rec(task: str, seq: int, **kw: Any) -> StepRecord:
        return StepRecord(task, seq, f"s{seq}", StepKind.STEP, StepStatus.SUCCEEDED, **kw)

    assert await store.commit(
        [StepWrite(progressed, 2, rec(progressed, 1, result=0, started_at=t0 + 0.8))],
        "setup",
        t0 + 0.8,
    ) == [True]
    ids = [(await app.submit("work", f"{queue}{i}", queue=queue)).id for i in range(3)]
    claimed = await store.claim("setup", [queue], 2, t0, t0 + 1, PAIRS)
    due, lost = (c.task.id for c in claimed)
    (queued,) = set(ids) - {due, lost}
    sent = await app.signal(due, "go", {"n": 1})
    await app.signal(lost, "go", {"n": 2})

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
    return {
        queued: "queued",
        due: "due",
        lost: "lost",
        worn: "worn",
        progressed: "progressed",
    }


def _task(t: Task) -> tuple[Any, ...]:
    return (
        t.status,
        t.attempt,
        t.steps_done,
        t.current_step,
        t.wait_reason,
        t.started_at,
        t.error,
        t.finished_at,
    )


def _shape(outcome: ClaimOutcome, role: dict[str, str]) -> dict[str, Any]:
    """The outcome with task ids replaced by the task's role, and no timestamps of rows
    the two scenarios wrote at different moments. The order within one claim's batch
    is not part of the contract (the worker starts them all at once)."""
    claimed = {}
    for c in outcome.claimed:
        claimed[role[c.task.id]] = (
            _task(c.task),
            c.recovered,
            [dataclasses.replace(s, task_id="") for s in c.steps.values()],
            [(s.name, s.payload) for s in c.signals],
            [dataclasses.replace(a, id="", task_id="") for a in c.approvals.values()],
        )
    return {"claimed": claimed, "lost": {role[t.id]: _task(t) for t in outcome.lost}}


def _event(e: Event) -> tuple[Any, ...]:
    at = e.at if e.type in ("task.started", "task.failed") else None
    # Only the events a claim writes are compared whole (the others carry other ids).
    data = e.data if e.type in ("task.started", "task.failed") else None
    return (
        e.type,
        e.prior_status,
        e.new_status,
        e.attempt,
        e.worker,
        e.step,
        e.error_class,
        e.decision,
        data,
        at,
    )


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
        fast_roles = await _setup(app, "fast", t0)
        slow_roles = await _setup(app, "slow", t0)
        now = t0 + 10

        async def one_statement(conn: sql.Conn) -> ClaimOutcome:
            assert isinstance(conn, PgConn)
            return await batch.claim(conn, "w", ["fast"], 10, now, now + 60, PAIRS, CAP)

        async def shared(conn: sql.Conn) -> ClaimOutcome:
            return await sql.claim(conn, sql.POSTGRES, "w", ["slow"], 10, now, now + 60, PAIRS, CAP)

        fast = await store._run(one_statement)
        slow = await store._run(shared)
        assert sorted(fast_roles[c.task.id] for c in fast.claimed) == [
            "due",
            "lost",
            "progressed",
            "queued",
        ]
        assert [fast_roles[t.id] for t in fast.lost] == ["worn"]
        (worn,) = fast.lost
        assert worn.status == "failed" and worn.error is not None
        assert worn.error.type == "WorkerLost" and "2 times in a row" in worn.error.message
        assert _shape(fast, fast_roles) == _shape(slow, slow_roles)
        for roles in (fast_roles, slow_roles):
            for task_id, name in roles.items():
                stored = await app.get(task_id)
                if name == "worn":
                    assert (stored.status, stored.error) == (worn.status, worn.error)
                else:
                    assert stored.status == "running"
        by_role = {name: task_id for task_id, name in slow_roles.items()}
        for task_id in [*fast_roles, *slow_roles]:  # the claims' events are visible
            await event_where(app, task_id, lambda e: e.worker == "w")
        for f, name in fast_roles.items():
            fe = await app.store.list_events(task_id=f)
            se = await app.store.list_events(task_id=by_role[name])
            assert [_event(e) for e in fe] == [_event(e) for e in se]
        (failed,) = [
            e for e in await app.store.list_events(task_id=worn.id) if e.type == "task.failed"
        ]
        assert (failed.decision, failed.error_class, failed.worker) == (
            "worker_lost",
            "WorkerLost",
            "w",
        )
        assert failed.data == {
            "message": worn.error.message,
            "lease_expiries": 2,
            "lost_worker": "setup",
        }
    finally:
        await app.close()


async def test_a_sqlite_claim_commits_without_a_flush_and_a_submit_with_one(tmp_path: Any) -> None:
    """ADR 75 on SQLite: a transaction of claims only commits with `synchronous =
    NORMAL` (no fsync; the next flushed commit syncs the WAL with it), anything else
    with the configured FULL, which the claim leaves in place."""
    app = Tether(f"sqlite:///{tmp_path / 'a.db'}")

    @app.workflow("echo")
    async def echo(ctx: Context, value: int) -> int:
        return value

    await app.open()
    store: Any = app.store
    statements: list[str] = []
    await store._run_raw(lambda conn: conn.set_trace_callback(statements.append))
    try:
        await store.submit([app.new_task("echo", 1)], 1000.0)
        submitted = list(statements)
        statements.clear()
        claimed = await store.claim("w", ["default"], 1, 2000.0, 3000.0, None)
        assert len(claimed) == 1
        claiming = list(statements)
        sync = await store._run_raw(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
    finally:
        await store._run_raw(lambda conn: conn.set_trace_callback(None))
        await app.close()
    assert "COMMIT" in submitted and "PRAGMA synchronous = NORMAL" not in submitted
    relax, begin, commit = (
        claiming.index(s) for s in ("PRAGMA synchronous = NORMAL", "BEGIN IMMEDIATE", "COMMIT")
    )
    assert relax < begin < commit  # the level cannot change inside a transaction
    assert claiming[commit + 1] == "PRAGMA synchronous = FULL"
    assert sync == 2  # FULL again
