"""Worker operations, one at a time: step records, completions, suspensions, releases and
approvals opened by a run (the reference the drivers' set-based batches must equal)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tether import serde
from tether.models import Approval, StepKind, StepStatus, WaitReason
from tether.store.base import (
    ExpireApproval,
    Finish,
    Op,
    OpenApproval,
    Release,
    StepWrite,
    Suspend,
)
from tether.store.sql import events, fairness
from tether.store.sql.approvals import expire_approval
from tether.store.sql.children import ended_child_unrecorded, family_ended
from tether.store.sql.core import (
    STEP_COLUMNS,
    Conn,
    Dialect,
    Row,
    insert_approval,
)
from tether.store.sql.gate_slots import take_wake_up
from tether.store.sql.spend import poked

GATE_REASONS = (str(WaitReason.CIRCUIT_OPEN), str(WaitReason.CONCURRENCY))
"""The wait reasons of the step gates that wake their waiters (`sql.gate_slots`)."""


class EventBuffer:
    """A `Conn` that holds back event inserts, to write them together at the end of a
    batch of worker operations (no operation reads the events it writes)."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self.events: list[tuple[Any, ...]] = []

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._conn.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return await self._conn.fetchone(sql, params)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        if sql is events.INSERT_EVENT:
            self.events.append(tuple(params))
            return 1
        return await self._conn.execute(sql, params)

    async def insert_rows(self, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        if table == "events":
            self.events.extend(tuple(r) for r in rows)
            return
        await self._conn.insert_rows(table, columns, rows)


async def apply_ops(
    conn: Conn, d: Dialect, ops: Sequence[Op], worker: str, now: float
) -> list[bool]:
    """Apply worker operations in order, in the caller's transaction; their event rows
    are inserted together at the end (same order, same transaction)."""
    buffered = EventBuffer(conn)
    results = [await apply_op(buffered, d, op, worker, now) for op in ops]
    await events.insert(conn, buffered.events)
    return results


def step_progress(writes: Iterable[StepWrite]) -> dict[tuple[str, int], tuple[int, str]]:
    """Per (task, attempt), what its step records in a batch add to the task row: how
    many succeeded (`steps_done`) and the last one's name (`current_step`), as applying
    them in turn would leave it. For the drivers' set-based progress updates."""
    progress: dict[tuple[str, int], tuple[int, str]] = {}
    for w in writes:
        done, _ = progress.get((w.task_id, w.attempt), (0, ""))
        if w.record.status == StepStatus.SUCCEEDED:
            done += 1
        progress[(w.task_id, w.attempt)] = (done, w.record.name)
    return progress


def in_task_order_by_kind(ops: Sequence[Op]) -> bool:
    """Whether applying `ops` kind by kind (all step records, then the other operations,
    then the completions, as the drivers' set-based batches do) has the outcome of
    applying them in order: each task appears with one attempt, and its step records
    come before at most one other operation, its last. The engine's batches almost
    always are so; not, for instance, a completion followed by the hand-back of a
    stopping worker, a record written after a hand-back, or two attempts of a task (a
    stale run's late write). Such batches go through `apply_ops`, and so do batches with
    an approval's expiry or a run's entry into compensation (rare, and they touch rows or
    columns the set-based paths do not know about)."""
    seen: dict[str, tuple[int, bool]] = {}  # task -> (attempt, has its last operation)
    for op in ops:
        if isinstance(op, ExpireApproval) or (
            isinstance(op, StepWrite) and op.record.kind == StepKind.COMPENSATING
        ):
            return False
        prior = seen.get(op.task_id)
        if prior is not None and (prior[0] != op.attempt or prior[1]):
            return False
        seen[op.task_id] = (op.attempt, not isinstance(op, StepWrite))
    return True


async def _fenced_task(conn: Conn, d: Dialect, task_id: str, attempt: int) -> Row | None:
    return await conn.fetchone(
        "SELECT tenant, status, queue, cancel_requested, phase FROM tasks "
        "WHERE id = %s AND attempt = %s "
        f"AND status = 'running'{d.lock_rows}",
        (task_id, attempt),
    )


async def apply_op(conn: Conn, d: Dialect, op: Op, worker: str, now: float) -> bool:
    """Apply one worker operation; False when the worker no longer holds the task."""
    if isinstance(op, StepWrite):
        return await _step_write(conn, op, worker, now)
    if isinstance(op, Finish):
        if not await _finish(conn, op, worker, now):
            return False
        await finish_family(conn, d, [op], now)
        return True
    row = await _fenced_task(conn, d, op.task_id, op.attempt)
    if row is None:
        return False
    tenant = row["tenant"]
    if isinstance(op, OpenApproval):
        await _open_approval(conn, op.approval, op.attempt, worker, now)
    elif isinstance(op, ExpireApproval):
        # Fenced above (the task row is locked for this attempt); the shared expiry
        # logic then closes it unless a decision committed first.
        await expire_approval(conn, d, op.approval_id, now)
    elif isinstance(op, Suspend):
        # A cancellation requested while the task ran must not be parked with it: wake
        # it, and its next run ends it as cancelled; unless it is compensating, which a
        # cancellation does not stop (it waits out its backoff like any other).
        woken = bool(row["cancel_requested"]) and row["phase"] != "compensation"
        cause = "cancel_requested"
        if not woken and op.signals:
            cause = "signal_arrived"
            woken = (
                await conn.fetchone(
                    "SELECT id FROM signals WHERE task_id = %s AND consumed_seq IS NULL "
                    f"AND name {d.any_of} LIMIT 1",
                    (op.task_id, d.list_param(op.signals)),
                )
                is not None
            )
        if not woken and str(op.reason) == "approval":
            cause = "approval_decided"
            # A decision committed while the task was still running found nothing to
            # wake: an approval closed since, whose outcome the log lacks, wakes it now.
            woken = (
                await conn.fetchone(
                    "SELECT a.id FROM approvals a WHERE a.task_id = %s AND a.seq >= 0 AND "
                    "a.status <> 'pending' AND NOT EXISTS (SELECT 1 FROM steps s WHERE "
                    "s.task_id = a.task_id AND s.seq = a.seq AND s.status = 'succeeded') LIMIT 1",
                    (op.task_id,),
                )
                is not None
            )
        if not woken and str(op.reason) == "budget":
            # A raise decided while the task was still running found it running: the
            # line it waits for marked it poked instead (ADR 92).
            cause = "budget_raised"
            woken = await poked(conn, op.task_id)
        if not woken and op.children:
            # A child that ended while the task ran found it running, so woke nothing.
            cause = "child_ended"
            woken = await ended_child_unrecorded(conn, op.task_id)
        if not woken and str(op.reason) in GATE_REASONS:
            # A step gate (a freed slot, a closed breaker) woke the task while it ran on
            # its way here, so found nothing waiting: it goes back to the queue now.
            cause = "gate_woken"
            woken = await take_wake_up(conn, op.task_id)
        status, run_at = ("queued", now) if woken else ("waiting", op.run_at)
        await conn.execute(
            "UPDATE tasks SET status = %s, wait_reason = %s, wait_signals = %s, run_at = %s, "
            "lease_owner = NULL, lease_expires_at = NULL, updated_at = %s WHERE id = %s",
            (
                status,
                None if woken else str(op.reason),
                serde.dumps(op.signals) if op.signals else None,
                run_at,
                now,
                op.task_id,
            ),
        )
        await conn.execute(
            events.INSERT_EVENT,
            events.suspended(
                op, tenant, worker, now, woken_by=cause if woken else None, run_at=run_at
            ),
        )
    elif isinstance(op, Release):
        if op.queue is None:
            await conn.execute(
                "UPDATE tasks SET status = 'queued', run_at = %s, lease_owner = NULL, "
                "lease_expires_at = NULL, updated_at = %s WHERE id = %s",
                (now, now, op.task_id),
            )
        else:  # routed: ranked afresh in the queue it moves to (its virtual time)
            row = await conn.fetchone(
                "SELECT priority, fair_key FROM tasks WHERE id = %s", (op.task_id,)
            )
            assert row is not None
            moved = fairness.Moved(op.task_id, tenant, op.queue, row["priority"], row["fair_key"])
            rank = (await fairness.ranks(conn, d, [moved], now))[op.task_id]
            await conn.execute(
                "UPDATE tasks SET status = 'queued', run_at = %s, lease_owner = NULL, "
                "lease_expires_at = NULL, updated_at = %s, fair_rank = %s, "
                "home_queue = COALESCE(home_queue, queue), queue = %s WHERE id = %s",
                (now, now, rank, op.queue, op.task_id),
            )
        await conn.execute(events.INSERT_EVENT, events.released(op, tenant, worker, now))
    return True


async def finish_family(conn: Conn, d: Dialect, applied: Sequence[Finish], now: float) -> None:
    """What the completions `applied` (all applied) do to their families: wake the
    parents of children, cancel the children of parents (`sql.children`)."""
    parents = [f.parent_id for f in applied if f.parent_id is not None]
    ended = [f.task_id for f in applied if f.children]
    if parents or ended:
        await family_ended(conn, d, parents, ended, now)


def finish_params(op: Finish) -> tuple[Any, ...]:
    """(status, result, error, error_fingerprint) written by a `Finish`."""
    err = op.error
    return (
        str(op.status),
        op.result,
        None if err is None else serde.dumps(err.to_json()),
        None if err is None else err.fingerprint,
    )


def finish_progress(op: Finish) -> tuple[int, str | None]:
    """What the step results a `Finish` carries add to its task row: how many succeeded
    (`steps_done`) and the last one's name (`current_step`; None: unchanged)."""
    done = sum(1 for s in op.steps if s.record.status == StepStatus.SUCCEEDED)
    return done, op.steps[-1].record.name if op.steps else None


async def _finish(conn: Conn, op: Finish, worker: str, now: float) -> bool:
    for step in op.steps:
        # Fenced like the finish below (same transaction, same outcome); the step rows go
        # first, while the task is not terminal yet (a trigger guards terminal step logs).
        inserted = await conn.execute(
            f"INSERT INTO steps ({STEP_COLUMNS}) SELECT {_STEP_PLACEHOLDERS} "
            "WHERE EXISTS (SELECT 1 FROM tasks WHERE id = %s AND attempt = %s "
            f"AND status = 'running') {STEP_UPSERT}",
            (*step_params(step), op.task_id, op.attempt),
        )
        if not inserted:
            return False
        if step.consume_signal is not None:
            await consume_signal(conn, step)
    # The fenced UPDATE is the lease check (and row lock on PostgreSQL): one statement
    # instead of a SELECT then an UPDATE, for every task that ends.
    row = await conn.fetchone(
        "UPDATE tasks SET status = %s, result = %s, error = %s, error_fingerprint = %s, "
        "finished_at = %s, updated_at = %s, lease_owner = NULL, lease_expires_at = NULL, "
        "run_at = NULL, steps_done = steps_done + %s, current_step = COALESCE(%s, current_step) "
        "WHERE id = %s AND attempt = %s AND status = 'running' RETURNING tenant",
        (
            *finish_params(op),
            now,
            now,
            *finish_progress(op),
            op.task_id,
            op.attempt,
        ),
    )
    if row is None:
        return False
    for event in events.finish_events(op, row["tenant"], worker, now):
        await conn.execute(events.INSERT_EVENT, event)
    return True


async def consume_signal(conn: Conn, op: StepWrite) -> None:
    await conn.execute(
        "UPDATE signals SET consumed_seq = %s WHERE id = %s AND consumed_seq IS NULL",
        (op.record.seq, op.consume_signal),
    )


_STEP_PLACEHOLDERS = ", ".join(["%s"] * len(STEP_COLUMNS.split(",")))

STEP_UPSERT = (
    "ON CONFLICT (task_id, seq) DO UPDATE SET status = excluded.status, "
    "attempts = excluded.attempts, result = excluded.result, error = excluded.error, "
    "finished_at = excluded.finished_at, wake_at = excluded.wake_at, meta = excluded.meta, "
    "attempt_errors = excluded.attempt_errors WHERE steps.status = 'pending'"
)
"""A step-log entry may move from pending to an outcome, never from an outcome."""


def step_params(op: StepWrite) -> tuple[Any, ...]:
    """The step-log row of a `StepWrite`, in `STEP_COLUMNS` order."""
    rec = op.record
    return (
        op.task_id,
        rec.seq,
        rec.name,
        str(rec.kind),
        str(rec.status),
        rec.attempts,
        None if rec.result is None else serde.dumps(rec.result),
        None if rec.error is None else serde.dumps(rec.error.to_json()),
        rec.started_at,
        rec.finished_at,
        rec.wake_at,
        serde.dumps(rec.meta) if rec.meta else None,
        serde.dumps([a.to_json() for a in rec.attempt_errors]) if rec.attempt_errors else None,
    )


async def _step_write(conn: Conn, op: StepWrite, worker: str, now: float) -> bool:
    rec = op.record
    done = rec.status == StepStatus.SUCCEEDED
    # The fenced progress update doubles as the lease check (and row lock on PostgreSQL).
    row = await conn.fetchone(
        "UPDATE tasks SET steps_done = steps_done + %s, current_step = %s, updated_at = %s "
        "WHERE id = %s AND attempt = %s AND status = 'running' RETURNING tenant",
        (1 if done else 0, rec.name, now, op.task_id, op.attempt),
    )
    if row is None:
        return False
    if rec.kind == StepKind.COMPENSATING:  # the run begins undoing its steps (ADR 83)
        await conn.execute("UPDATE tasks SET phase = 'compensation' WHERE id = %s", (op.task_id,))
    await conn.execute(
        f"INSERT INTO steps ({STEP_COLUMNS}) VALUES ({_STEP_PLACEHOLDERS}) {STEP_UPSERT}",
        step_params(op),
    )
    if op.consume_signal is not None:
        await consume_signal(conn, op)
    event = events.step(op, row["tenant"], worker, now)
    if event is not None:
        await conn.execute(events.INSERT_EVENT, event)
    return True


async def _open_approval(conn: Conn, a: Approval, attempt: int, worker: str, now: float) -> None:
    await insert_approval(conn, a)
    await conn.execute(events.INSERT_EVENT, events.approval_opened(a, attempt, worker, now))
