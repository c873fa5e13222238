"""Worker operations on PostgreSQL, set-based: a batch costs a handful of round trips.

The shared logic (`sql.apply_ops`) applies operations one by one, a few statements each:
right for SQLite, where a statement is a function call, but on PostgreSQL every
statement is a network round trip. Here the two operations that dominate (step records
and task completions) are applied with one statement per kind for the whole batch,
using arrays (`unnest`); the rare ones (suspend, release, approvals) go through the
shared logic unchanged. Semantics are the shared logic's: the same fencing condition,
the same row builders (`sql.step_params`, `sql.finish_params`) and event builders.

Order: a batch holds, per task, its step records before its final transition, so
steps are applied first, then the rare operations, then completions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tether.models import StepStatus
from tether.store import sql
from tether.store.base import Finish, Op, StepWrite

_STEP_TYPES = "text, int, text, text, text, int, text, text, float8, float8, float8, text"


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Transpose rows into one list per column (the arrays `unnest` takes)."""
    return [[row[i] for row in rows] for i in range(width)]


async def apply_ops(conn: sql.Conn, ops: Sequence[Op], worker: str, now: float) -> list[bool]:
    results = [False] * len(ops)
    events: list[tuple[Any, ...]] = []
    steps = [(i, op) for i, op in enumerate(ops) if isinstance(op, StepWrite)]
    finishes = [(i, op) for i, op in enumerate(ops) if isinstance(op, Finish)]
    others = [(i, op) for i, op in enumerate(ops) if not isinstance(op, StepWrite | Finish)]
    if steps:
        await _step_writes(conn, steps, worker, now, results, events)
    if others:
        buffered = sql._EventBuffer(conn)
        for i, op in others:
            results[i] = await sql.apply_op(buffered, sql.POSTGRES, op, worker, now)
        events += buffered.events
    if finishes:
        await _finishes(conn, finishes, worker, now, results, events)
    await sql.insert_events(conn, events)
    return results


async def _step_writes(
    conn: sql.Conn,
    steps: list[tuple[int, StepWrite]],
    worker: str,
    now: float,
    results: list[bool],
    events: list[tuple[Any, ...]],
) -> None:
    # Progress per task (several steps of one task may share a batch), fenced like
    # the shared logic: same attempt, still running. Sorted ids: a stable lock order.
    progress: dict[str, list[Any]] = {}
    for _, op in steps:
        entry = progress.setdefault(op.task_id, [op.attempt, 0, None])
        entry[1] += 1 if op.record.status == StepStatus.SUCCEEDED else 0
        entry[2] = op.record.name
    ids = sorted(progress)
    rows = await conn.fetchall(
        "UPDATE tasks t SET steps_done = t.steps_done + v.done, current_step = v.name, "
        "updated_at = %s FROM unnest(%s::text[], %s::int[], %s::int[], %s::text[]) "
        "AS v(id, attempt, done, name) WHERE t.id = v.id AND t.attempt = v.attempt "
        "AND t.status = 'running' RETURNING t.id, t.tenant",
        (
            now,
            ids,
            [progress[i][0] for i in ids],
            [progress[i][1] for i in ids],
            [progress[i][2] for i in ids],
        ),
    )
    tenants = {r["id"]: r["tenant"] for r in rows}
    accepted = [(i, op) for i, op in steps if op.task_id in tenants]
    # One row per (task, seq) in a statement: a retry's pending entry followed by its
    # outcome in the same batch leaves the outcome, as applying both in turn would.
    latest: dict[tuple[str, int], StepWrite] = {}
    for i, op in accepted:
        results[i] = True
        latest[(op.task_id, op.record.seq)] = op
        event = sql.step_event(op, tenants[op.task_id], worker, now)
        if event is not None:
            events.append(event)
    if latest:
        params = [sql.step_params(op) for op in latest.values()]
        placeholders = ", ".join(f"%s::{t.strip()}[]" for t in _STEP_TYPES.split(","))
        await conn.execute(
            f"INSERT INTO steps ({sql.STEP_COLUMNS}) SELECT * FROM unnest({placeholders}) "
            f"{sql.STEP_UPSERT}",
            _columns(params, 12),
        )
    consumed = [(op.consume_signal, op.record.seq) for _, op in accepted if op.consume_signal]
    if consumed:
        await conn.execute(
            "UPDATE signals s SET consumed_seq = v.seq FROM unnest(%s::bigint[], %s::int[]) "
            "AS v(id, seq) WHERE s.id = v.id AND s.consumed_seq IS NULL",
            _columns(consumed, 2),
        )


async def _finishes(
    conn: sql.Conn,
    finishes: list[tuple[int, Finish]],
    worker: str,
    now: float,
    results: list[bool],
    events: list[tuple[Any, ...]],
) -> None:
    ordered = sorted(finishes, key=lambda item: item[1].task_id)
    rows = [(op.task_id, op.attempt, *sql.finish_params(op)) for _, op in ordered]
    done = await conn.fetchall(
        "UPDATE tasks t SET status = v.status, result = v.result, error = v.error, "
        "error_fingerprint = v.fingerprint, finished_at = %s, updated_at = %s, "
        "lease_owner = NULL, lease_expires_at = NULL, run_at = NULL "
        "FROM unnest(%s::text[], %s::int[], %s::text[], %s::text[], %s::text[], %s::text[]) "
        "AS v(id, attempt, status, result, error, fingerprint) "
        "WHERE t.id = v.id AND t.attempt = v.attempt AND t.status = 'running' "
        "RETURNING t.id, t.tenant",
        (now, now, *_columns(rows, 6)),
    )
    tenants = {r["id"]: r["tenant"] for r in done}
    for i, op in finishes:
        if op.task_id in tenants:
            results[i] = True
            events.append(sql.finish_event(op, tenants[op.task_id], worker, now))
