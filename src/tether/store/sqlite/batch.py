"""Worker operations on SQLite, set-based: a few statements per batch, not per operation.

The shared logic (`sql.apply_ops`) runs two or three statements per operation. On
SQLite each is a trip from Python into the library and back, and the way back needs the
GIL, which the event loop holds while it runs the tasks: under load the database thread
spent more time on that ping-pong than on the statements themselves. Here a committer
batch costs four statements, whatever its size (ADR 48):

1. the fenced progress `UPDATE ... FROM json_each(?) ... RETURNING` of the tasks that
   wrote step records (the lease check, as in the shared logic);
2. one `INSERT INTO steps ... SELECT ... FROM json_each(?)` for every step row of the
   batch, each fenced on its task still running under that attempt (the step records
   and the results a completion carries, `Finish.steps`);
3. the rare operations (suspend, release, approvals) through the shared logic;
4. one fenced `UPDATE ... RETURNING` for every completion;

then one `INSERT INTO events ... SELECT ... FROM json_each(?)` with the events of the
operations that applied, in the order of the operations. Semantics are the shared
logic's: the same fencing conditions, row builders (`sql.step_params`,
`sql.finish_params`) and event builders; what one operation does is decided by its own
rows only. Order: steps first, then the rare operations, then completions keeps each
task's order when each task has its step records before at most one other operation
(`sql.in_task_order_by_kind`); other batches, and step rows with infinite times (JSON
cannot carry them), go through the shared logic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tether import serde
from tether.models import StepRecord
from tether.store import sql
from tether.store.base import Finish, Op, StepWrite

_STEP_NAMES = tuple(c.strip() for c in sql.STEP_COLUMNS.split(","))
_EVENT_NAMES = tuple(c.strip() for c in sql.events.EVENT_COLUMNS.split(","))


def _fields(names: Sequence[str]) -> str:
    """`json_extract(value, '$[0]') AS name0, ...` for rows given as JSON arrays."""
    return ", ".join(f"json_extract(value, '$[{i}]') AS {n}" for i, n in enumerate(names))


_PROGRESS = (
    "UPDATE tasks SET steps_done = steps_done + v.done, current_step = v.name, updated_at = ? "
    f"FROM (SELECT {_fields(('id', 'attempt', 'done', 'name'))} FROM json_each(?)) AS v "
    "WHERE tasks.id = v.id AND tasks.attempt = v.attempt AND tasks.status = 'running' "
    "RETURNING tasks.id, tasks.attempt, tasks.tenant"
)
# Each row carries its task's attempt after the step columns. `WHERE` before `ON
# CONFLICT` is required by SQLite's grammar for an upsert from a SELECT.
_STEPS = (
    f"INSERT INTO steps ({sql.STEP_COLUMNS}) SELECT {', '.join(_STEP_NAMES)} FROM "
    f"(SELECT key, {_fields((*_STEP_NAMES, 'attempt'))} FROM json_each(?)) AS x "
    "WHERE EXISTS (SELECT 1 FROM tasks t WHERE t.id = x.task_id AND t.attempt = x.attempt "
    f"AND t.status = 'running') ORDER BY x.key {sql.STEP_UPSERT}"
)
_FINISH_NAMES = ("id", "attempt", "status", "result", "error", "fingerprint", "done", "name")
_FINISHES = (
    "UPDATE tasks SET status = v.status, result = v.result, error = v.error, "
    "error_fingerprint = v.fingerprint, finished_at = ?, updated_at = ?, lease_owner = NULL, "
    "lease_expires_at = NULL, run_at = NULL, steps_done = steps_done + v.done, "
    "current_step = COALESCE(v.name, current_step) "
    f"FROM (SELECT {_fields(_FINISH_NAMES)} FROM json_each(?)) AS v "
    "WHERE tasks.id = v.id AND tasks.attempt = v.attempt AND tasks.status = 'running' "
    "RETURNING tasks.id, tasks.attempt, tasks.tenant"
)
_EVENTS = sql.events.insert_select(
    f"SELECT {', '.join(_EVENT_NAMES)} FROM "
    f"(SELECT key, {_fields(_EVENT_NAMES)} FROM json_each(?)) ORDER BY key"
)


def _finite_times(record: StepRecord) -> bool:
    """JSON has no infinity (orjson writes null): such a row must not travel as JSON."""
    return all(
        t is None or math.isfinite(t)
        for t in (record.started_at, record.finished_at, record.wake_at)
    )


async def apply_ops(conn: sql.Conn, ops: Sequence[Op], worker: str, now: float) -> list[bool]:
    """Apply a committer batch in the caller's transaction; one result per operation
    (False: the worker no longer holds that task)."""
    writes = [op for op in ops if isinstance(op, StepWrite)]
    finishes = [op for op in ops if isinstance(op, Finish)]
    records = [*(w.record for w in writes), *(s.record for f in finishes for s in f.steps)]
    if not sql.in_task_order_by_kind(ops) or not all(_finite_times(r) for r in records):
        return await sql.apply_ops(conn, sql.SQLITE, ops, worker, now)
    tenants: dict[tuple[str, int], str] = {}  # (task, attempt) -> tenant, when it applied

    if writes:
        progress = sql.step_progress(writes).items()
        rows = await conn.fetchall(
            _PROGRESS, (now, serde.dumps([(*key, *value) for key, value in progress]))
        )
        tenants.update(((r["id"], r["attempt"]), r["tenant"]) for r in rows)
    step_rows = [
        (*sql.step_params(w), w.attempt) for w in writes if (w.task_id, w.attempt) in tenants
    ]
    step_rows += [(*sql.step_params(s), f.attempt) for f in finishes for s in f.steps]
    if step_rows:
        await conn.execute(_STEPS, (serde.dumps(step_rows),))
    for w in writes:
        if w.consume_signal is not None and (w.task_id, w.attempt) in tenants:
            await sql.consume_signal(conn, w)

    others: dict[int, tuple[bool, list[tuple[Any, ...]]]] = {}
    for i, other in enumerate(ops):
        if not isinstance(other, StepWrite | Finish):
            buffered = sql.EventBuffer(conn)
            applied = await sql.apply_op(buffered, sql.SQLITE, other, worker, now)
            others[i] = (applied, buffered.events)

    finished: dict[tuple[str, int], str] = {}
    family = sql.EventBuffer(conn)  # what the completions do to families; events follow theirs
    if finishes:
        rows = await conn.fetchall(
            _FINISHES,
            (
                now,
                now,
                serde.dumps(
                    [
                        (
                            f.task_id,
                            f.attempt,
                            *sql.finish_params(f),
                            *sql.finish_progress(f),
                        )
                        for f in finishes
                    ]
                ),
            ),
        )
        finished = {(r["id"], r["attempt"]): r["tenant"] for r in rows}
        for f in finishes:
            if (f.task_id, f.attempt) in finished:
                for step in f.steps:
                    if step.consume_signal is not None:
                        await sql.consume_signal(conn, step)
        await sql.finish_family(
            family, sql.SQLITE, [f for f in finishes if (f.task_id, f.attempt) in finished], now
        )

    results: list[bool] = []
    events: list[tuple[Any, ...]] = []
    for i, op in enumerate(ops):
        steps: Sequence[StepWrite]
        if isinstance(op, StepWrite):
            tenant, steps = tenants.get((op.task_id, op.attempt)), (op,)
        elif isinstance(op, Finish):
            tenant, steps = finished.get((op.task_id, op.attempt)), op.steps
        else:
            ok, own = others[i]
            results.append(ok)
            events += own
            continue
        results.append(tenant is not None)
        if tenant is None:
            continue
        for s in steps:
            event = sql.events.step(s, tenant, worker, now)
            if event is not None:
                events.append(event)
        if isinstance(op, Finish):
            events.append(sql.events.finished(op, tenant, worker, now))
    events += family.events
    if events:
        await conn.execute(_EVENTS, (serde.dumps(events),))
    return results
