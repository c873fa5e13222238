"""Worker operations on PostgreSQL, set-based: one statement per kind per batch.

The shared logic (`sql.apply_ops`) applies operations one by one, a few statements each:
right for SQLite, where a statement is a function call, but on PostgreSQL every
statement is a network round trip. Here the two operations that dominate (step records
and task completions) are each applied with ONE statement for the whole batch: a
data-modifying CTE that runs the fenced `UPDATE tasks ... RETURNING tenant` and inserts
the step rows and event rows of the tasks it returned (arrays, `unnest`). The rare
operations (suspend, release, approvals) go through the shared logic unchanged.
Semantics are the shared logic's: the same fencing condition (attempt and
`status = 'running'`), the same row builders (`sql.step_params`, `sql.finish_params`)
and event builders.

A batch that needs one statement (W2: one step record at a time; W4: one completion)
runs it in autocommit: a single statement is its own atomic transaction, so BEGIN and
COMMIT would be two round trips for nothing. A batch that needs more runs them in one
explicit transaction.

Order: steps are applied first, then the rare operations, then completions with the
step results they carry (`Finish.steps`), which keeps each task's order when its step
records come before at most one other operation, its last (`sql.in_task_order_by_kind`);
other batches go through the shared logic. A completion's steps are fenced by locking
the task row, not updating it, and written in the completion's own statement before
any task of it ends (the step-log trigger protects terminal tasks); the completion's
UPDATE adds their progress: a task that ends is written once, in one statement (ADR 56,
ADR 78).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from tether import serde
from tether.models import StepStatus, Task
from tether.store import sql
from tether.store.base import Claimed, ClaimOutcome, Finish, NewTask, Op, StepWrite, Submitted
from tether.store.postgres.conn import COPY_FROM, PgConn, values_list

_STEP_TYPES: tuple[str, ...] = ("text", "int", "text", "text", "text", "int", "text", "text")
_STEP_TYPES += ("float8", "float8", "float8", "text", "text")
_STEP_NAMES = tuple(c.strip() for c in sql.STEP_COLUMNS.split(","))
# Event columns without `tenant` (it comes from the fenced UPDATE's RETURNING), plus
# the position in the batch, so ids follow the order of the operations.
_EVENT_TYPES: tuple[str, ...] = ("text", "float8", "text", "text", "text", "int", "text")
_EVENT_TYPES += ("text", "text", "text", "text", "int")
_EVENT_NAMES = (
    *(c.strip() for c in sql.events.EVENT_COLUMNS.split(",") if c.strip() != "tenant"),
    "ord",
)

SMALL = 8
"""Up to this many rows a row source is a `VALUES` list of scalars; above, one JSON
array of rows (`jsonb_array_elements`). Scalars are cheapest for a few rows; JSON keeps
one statement text, and so one prepared plan, for any size, and costs one orjson call
where arrays made psycopg inspect every element to pick an array type (ADR 45). The
array is read as `jsonb`: parsed once, where each `->>` on a `json` element parses the
element's text again (a 12-column row, 12 times)."""


def _rows(
    alias: str, types: Sequence[str], names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> tuple[str, list[Any]]:
    """A row source `... AS alias(names)` for `rows`, and its parameters."""
    cols = f"{alias}({', '.join(names)})"
    if len(rows) <= SMALL:
        one = "(" + ", ".join(f"%s::{t}" for t in types) + ")"
        return f"(VALUES {', '.join([one] * len(rows))}) AS {cols}", [
            v for row in rows for v in row
        ]
    floats = [i for i, t in enumerate(types) if t == "float8"]
    if floats:
        # JSON has no infinity (orjson writes null); PostgreSQL reads 'Infinity' text.
        rows = [_finite_or_text(row, floats) for row in rows]
    fields = ", ".join(
        f"(r->>{i})::{t} AS {n}" for i, (t, n) in enumerate(zip(types, names, strict=True))
    )
    return f"(SELECT {fields} FROM jsonb_array_elements(%s::jsonb) r) AS {alias}", [
        serde.dumps(rows)
    ]


def _finite_or_text(row: Sequence[Any], floats: list[int]) -> Sequence[Any]:
    if all(not isinstance(row[i], float) or math.isfinite(row[i]) for i in floats):
        return row
    out = list(row)
    for i in floats:
        v = out[i]
        if isinstance(v, float) and not math.isfinite(v):
            out[i] = "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return out


def _float_fields(row: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """`json_agg` writes non-finite float8 values as strings ('Infinity'): read them back."""
    for name in names:
        if isinstance(row.get(name), str):
            row[name] = float(row[name])
    return row


_STEP_FLOATS = ("started_at", "finished_at", "wake_at")
_UPSERTED = tuple(
    _STEP_NAMES.index(c)
    for c in (
        "status",
        "attempts",
        "result",
        "error",
        "finished_at",
        "wake_at",
        "meta",
        "attempt_errors",
    )
)
"""The columns `sql.STEP_UPSERT` sets when a record meets a pending one of its step."""


def _one_row_per_step(writes: Iterable[StepWrite]) -> list[tuple[Any, ...]]:
    """The step rows of `writes`, one per (task, seq), as applying them in turn with
    `sql.STEP_UPSERT` would leave them: PostgreSQL's upsert cannot touch a row twice in
    one statement. A later record of a step updates an earlier pending one (which
    keeps its name, kind and start) and is ignored after an outcome."""
    rows: dict[tuple[str, int], list[Any]] = {}
    status = _STEP_NAMES.index("status")
    for op in writes:
        row = list(sql.step_params(op))
        prior = rows.get((op.task_id, op.record.seq))
        if prior is None:
            rows[(op.task_id, op.record.seq)] = row
        elif prior[status] == str(StepStatus.PENDING):
            for i in _UPSERTED:
                prior[i] = row[i]
    return [tuple(r) for r in rows.values()]


_APPROVAL_FLOATS = ("created_at", "expires_at", "decided_at")


def _events_cte(events: list[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    """`INSERT INTO events` for the event rows of the tasks the CTE `u` returned, in the
    order given."""
    if not events:
        return "", []
    source, params = _rows(
        "ev", _EVENT_TYPES, _EVENT_NAMES, [(e[0], *e[2:], n) for n, e in enumerate(events)]
    )
    cols = ", ".join(f"ev.{c}" for c in _EVENT_NAMES[1:-1])
    return (
        ", e AS ("
        + sql.events.insert_select(
            f"SELECT ev.task_id, u.tenant, {cols} FROM {source} JOIN u ON u.id = ev.task_id "
            "ORDER BY ev.ord"
        )
        + ")"
    ), params


_RETURN = " SELECT id, tenant FROM u"


async def apply_ops(conn: PgConn, ops: Sequence[Op], worker: str, now: float) -> list[bool]:
    """Apply a committer batch: in autocommit when it is one statement, else in one
    transaction of its own (the connection must not be in a transaction)."""
    if not sql.in_task_order_by_kind(ops):
        async with conn.transaction():
            return await sql.apply_ops(conn, sql.POSTGRES, ops, worker, now)
    results = [False] * len(ops)
    steps = [(i, op) for i, op in enumerate(ops) if isinstance(op, StepWrite)]
    finishes = [(i, op) for i, op in enumerate(ops) if isinstance(op, Finish)]
    others = [(i, op) for i, op in enumerate(ops) if not isinstance(op, StepWrite | Finish)]
    family = any(op.parent_id is not None or op.children for _, op in finishes)
    if not others and not (steps and finishes) and not family:
        if steps:
            await _step_writes(conn, steps, worker, now, results)
        elif finishes:
            await _finishes(conn, finishes, worker, now, results)
        return results
    async with conn.transaction():
        if steps:
            await _step_writes(conn, steps, worker, now, results)
        if others:
            applied = await sql.apply_ops(conn, sql.POSTGRES, [op for _, op in others], worker, now)
            for (i, _), ok in zip(others, applied, strict=True):
                results[i] = ok
        if finishes:
            await _finishes(conn, finishes, worker, now, results)
        if family:
            ended = [op for i, op in finishes if results[i]]
            await sql.finish_family(conn, sql.POSTGRES, ended, now)
    return results


async def _step_writes(
    conn: PgConn,
    steps: list[tuple[int, StepWrite]],
    worker: str,
    now: float,
    results: list[bool],
) -> None:
    # Progress per task (several steps of one task may share a batch), fenced like
    # the shared logic: same attempt, still running. Sorted ids: a stable lock order.
    progress = sorted(sql.step_progress(op for _, op in steps).items())
    events: list[tuple[Any, ...]] = []
    for _, op in steps:
        event = sql.events.step(op, "", worker, now)
        if event is not None:
            events.append(event)
    v, v_params = _rows(
        "v",
        ("text", "int", "int", "text"),
        ("id", "attempt", "done", "name"),
        [(task, attempt, *rest) for (task, attempt), rest in progress],
    )
    s, s_params = _step_rows_ctes([op for _, op in steps])
    e, e_params = _events_cte(events)
    rows = await conn.fetchall(
        "WITH u AS (UPDATE tasks t SET steps_done = t.steps_done + v.done, "
        f"current_step = v.name, updated_at = %s FROM {v} WHERE t.id = v.id "
        "AND t.attempt = v.attempt AND t.status = 'running' RETURNING t.id, t.tenant)"
        f"{s}{e}{_RETURN}",
        [now, *v_params, *s_params, *e_params],
    )
    accepted = {r["id"] for r in rows}
    for i, op in steps:
        results[i] = op.task_id in accepted


def _step_rows_ctes(
    writes: list[StepWrite], fence: str = "u", returning: bool = False
) -> tuple[str, list[Any]]:
    """`, s AS (...)` inserting the step rows of `writes` and, when some consume a
    signal, `, c AS (...)` marking those signals, both only for the tasks the CTE
    `fence` returned; and their parameters. `returning`: `s` returns a row per step."""
    x, params = _rows("x", _STEP_TYPES, _STEP_NAMES, _one_row_per_step(writes))
    text = (
        f", s AS (INSERT INTO steps ({sql.STEP_COLUMNS}) "
        f"SELECT {', '.join('x.' + c for c in _STEP_NAMES)} FROM {x} "
        f"WHERE x.task_id IN (SELECT id FROM {fence}) {sql.STEP_UPSERT}"
        + (" RETURNING 1)" if returning else ")")
    )
    consumed = [
        (op.consume_signal, op.record.seq, op.task_id)
        for op in writes
        if op.consume_signal is not None
    ]
    if consumed:
        w, w_params = _rows("w", ("bigint", "int", "text"), ("id", "seq", "task_id"), consumed)
        text += (
            f", c AS (UPDATE signals g SET consumed_seq = w.seq FROM {w} WHERE g.id = w.id "
            f"AND g.consumed_seq IS NULL AND w.task_id IN (SELECT id FROM {fence}))"
        )
        params += w_params
    return text, params


async def _finishes(
    conn: PgConn,
    finishes: list[tuple[int, Finish]],
    worker: str,
    now: float,
    results: list[bool],
) -> None:
    ordered = sorted(finishes, key=lambda item: item[1].task_id)
    v, v_params = _rows(
        "v",
        ("text", "int", "text", "text", "text", "text", "int", "text"),
        ("id", "attempt", "status", "result", "error", "fingerprint", "done", "name"),
        [
            (op.task_id, op.attempt, *sql.finish_params(op), *sql.finish_progress(op))
            for _, op in ordered
        ],
    )
    e, e_params = _events_cte(
        [e for _, op in finishes for e in sql.events.finish_events(op, "", worker, now)]
    )
    carried, carried_params, wait_for_steps = _carried_steps([op for _, op in ordered])
    done = await conn.fetchall(
        f"WITH {carried}u AS (UPDATE tasks t SET status = v.status, result = v.result, "
        "error = v.error, error_fingerprint = v.fingerprint, finished_at = %s, "
        "updated_at = %s, lease_owner = NULL, lease_expires_at = NULL, run_at = NULL, "
        "steps_done = t.steps_done + v.done, current_step = COALESCE(v.name, t.current_step) "
        f"FROM {v}{wait_for_steps} WHERE t.id = v.id AND t.attempt = v.attempt "
        f"AND t.status = 'running' RETURNING t.id, t.tenant){e}{_RETURN}",
        (*carried_params, now, now, *v_params, *e_params),
    )
    accepted = {r["id"] for r in done}
    for i, op in finishes:
        results[i] = op.task_id in accepted


def _carried_steps(finishes: list[Finish]) -> tuple[str, list[Any], str]:
    """The CTEs that write the step results completions carry (`Finish.steps`, ADR 44)
    in the completions' own statement (ADR 78), their parameters, and what joins the
    completions' UPDATE to them. The tasks are fenced like the completions (same
    attempt, still running) and locked (`l`), so the completion's fence agrees with
    theirs; the UPDATE waits for `k`, a count over every step row written, so the
    step-log trigger (no steps for a terminal task) runs before any task ends. The
    completion's UPDATE adds their progress: a task that ends is written once (ADR 56)."""
    writes = [step for op in finishes for step in op.steps]
    if not writes:
        return "", [], ""
    fences = sorted({(op.task_id, op.attempt) for op in finishes if op.steps})
    f, f_params = _rows("f", ("text", "int"), ("id", "attempt"), fences)
    s, s_params = _step_rows_ctes(writes, fence="l", returning=True)
    text = (
        "l AS MATERIALIZED (SELECT t.id FROM tasks t JOIN "
        f"{f} ON t.id = f.id AND t.attempt = f.attempt WHERE t.status = 'running' "
        f"ORDER BY t.id FOR NO KEY UPDATE OF t){s}, k AS (SELECT count(*) FROM s), "
    )  # id: lock order
    return text, [*f_params, *s_params], ", k"


def _json_rows(columns: str, table: str, where: str, order: str) -> str:
    return f"(SELECT json_agg(r{order}) FROM (SELECT {columns} FROM {table} WHERE {where}) r)"


def one_statement_submit(tasks: Sequence[NewTask]) -> bool:
    """Whether `submit` can store `tasks`: a few, none with an idempotency key (a read
    decides about it), a callback (its own subscription row) or a concurrency key (an
    admission decides about it)."""
    return len(tasks) <= COPY_FROM and all(
        t.idempotency_key is None and t.callback is None and t.concurrency_key is None
        for t in tasks
    )


async def submit(conn: PgConn, tasks: Sequence[NewTask], now: float) -> list[Submitted]:
    """New tasks and their `task.created` events as ONE autocommit statement (the
    shared `sql.submit` takes BEGIN, the fairness upserts, two INSERTs and COMMIT): for
    `one_statement_submit` batches, the intake's usual case (ADR 78). The fairness
    floors (`f`) and clocks (`c`) move on in CTEs and each task reads its rank from
    `c` (ADR 88); the events reference no row of the tasks' INSERT, so the INSERTs
    need no order."""
    plan = sql.fairness.ranking(tasks, now)
    rows = [sql.new_task_row(t, now, None) for t in tasks]
    rank_at = _NEW_TASK_NAMES.index("fair_rank")
    ranked = "(SELECT c.clock FROM c WHERE c.queue = %s AND c.fair_key = %s) - %s"
    task_values: list[str] = []
    task_params: list[Any] = []
    for t, row in zip(tasks, rows, strict=True):
        marks = ["%s"] * len(row)
        values = list(row)
        if plan is not None and t.id in plan.keys:
            marks[rank_at] = ranked
            offset = plan.offsets[t.id] + plan.priorities[t.id]
            values[rank_at : rank_at + 1] = [*plan.keys[t.id], offset]
        task_values.append("(" + ", ".join(marks) + ")")
        task_params += values
    ctes, cte_params = "", list[Any]()
    if plan is not None:
        floors, floor_params = plan.floors(sql.POSTGRES)
        clocks, clock_params = plan.clocks(
            sql.POSTGRES, lambda q: ("(SELECT f.floor FROM f WHERE f.queue = %s)", [q])
        )
        ctes = f"f AS ({floors}), c AS ({clocks}), "
        cte_params = [*floor_params, *clock_params]
    event_values, event_params = values_list([sql.events.created(t, now) for t in tasks])
    await conn.execute(
        f"WITH {ctes}t AS (INSERT INTO tasks ({sql.NEW_TASK_COLUMNS}) "
        f"VALUES {', '.join(task_values)}) "
        f"INSERT INTO events ({sql.events.EVENT_COLUMNS}) VALUES {event_values}",
        [*cte_params, *task_params, *event_params],
    )
    return [Submitted(sql.new_task_record(t, now), created=True) for t in tasks]


_NEW_TASK_NAMES = [c.strip() for c in sql.NEW_TASK_COLUMNS.split(",")]


ASYNC_COMMIT = "SELECT set_config('synchronous_commit', 'off', true)"
"""Makes the transaction it runs in commit without waiting for its WAL to reach the
disk (ADR 75; the claim's statement, and the store's `_run(durable=False)`). A claim
needs no flush of its own: whatever a claimed task does next that counts (a step's
record, the task's end) commits with a flush, and the WAL is one sequence, so that
flush takes the claim with it; a claim lost in a database crash only puts the task
back in the queue, as a lost worker would."""


async def claim(
    conn: PgConn,
    worker: str,
    queues: list[str],
    limit: int,
    now: float,
    lease_until: float,
    workflows: Sequence[tuple[str, int]] | None,
    max_lease_expiries: int = 0,
) -> ClaimOutcome:
    """`sql.claim` as ONE autocommit statement: pick (the same four index scans, in the
    same order of preference, `SKIP LOCKED`), take the lease, write the `task.started`
    events and return what replay needs (step log, unconsumed signals, approvals as
    JSON arrays). One round trip instead of about ten (ADR 45). A task whose worker was
    lost `max_lease_expiries` times in a row is failed by the same `UPDATE` instead
    (`p.lost`; its event is `task.failed`), and returned with `prior = 'lost'` (ADR 64)."""
    d = sql.POSTGRES
    only, wf = sql.workflow_match(d, workflows)
    extra = () if wf is None else (wf,)
    cap = max_lease_expiries or sql.NO_LIMIT
    in_queues, qs = sql.queue_match(d, queues)
    queued, params = sql.queued_pick(d, queues, only, now, wf, limit)
    error, digest, message = sql.worker_lost_params(cap)
    returning = ", ".join(f"t.{c.strip()}" for c in sql.TASK_COLUMNS.split(","))
    text = (
        f"WITH q AS ({queued}), "
        f"l AS ({sql.delayed_pick(d, in_queues, only)}), "
        "w AS (SELECT id, status, NULL::int AS expiries, FALSE AS lost, NULL::text AS "
        f"lost_worker FROM tasks WHERE status = 'waiting' AND run_at <= %s AND {in_queues}"
        f"{only} ORDER BY run_at LIMIT %s FOR UPDATE SKIP LOCKED), "
        f"x AS (SELECT id, status, {sql.NEXT_EXPIRIES} AS expiries, {sql.NEXT_EXPIRIES} "
        ">= %s AS lost, lease_owner AS lost_worker FROM tasks WHERE status = 'running' "
        f"AND lease_expires_at < %s AND {in_queues}{only} ORDER BY lease_expires_at "
        "LIMIT %s FOR UPDATE SKIP LOCKED), "
        # UNION ALL is evaluated arm by arm: later scans run only while room is left.
        "picked AS (SELECT * FROM (SELECT id, status, NULL::int AS expiries, FALSE AS lost, "
        "NULL::text AS lost_worker FROM q UNION ALL SELECT id, status, NULL::int, FALSE, "
        "NULL::text FROM l UNION ALL SELECT * FROM w UNION ALL "
        "SELECT * FROM x) c LIMIT %s), "
        # One UPDATE takes the leases and fails the lost (CASE on `p.lost`): a second
        # UPDATE over `picked` would cost every claim a materialized CTE and two nodes.
        "u AS (UPDATE tasks t SET status = CASE WHEN p.lost THEN 'failed' ELSE 'running' END, "
        "attempt = CASE WHEN p.lost THEN t.attempt ELSE t.attempt + 1 END, "
        "lease_owner = CASE WHEN p.lost THEN NULL ELSE %s END, "
        "lease_expires_at = CASE WHEN p.lost THEN NULL ELSE %s::float8 END, "
        "started_at = COALESCE(t.started_at, %s), updated_at = %s, "
        "lease_expiries = COALESCE(p.expiries, t.lease_expiries), "
        "lease_expiry_steps = CASE WHEN p.expiries IS NULL THEN t.lease_expiry_steps "
        "ELSE t.steps_done END, wait_reason = NULL, wait_signals = NULL, "
        "error = CASE WHEN p.lost THEN %s ELSE t.error END, "
        "error_fingerprint = CASE WHEN p.lost THEN %s ELSE t.error_fingerprint END, "
        "finished_at = CASE WHEN p.lost THEN %s::float8 ELSE t.finished_at END, "
        "run_at = CASE WHEN p.lost THEN NULL ELSE t.run_at END FROM picked p "
        f"WHERE t.id = p.id RETURNING {returning}, t.lease_expiries, p.lost_worker, "
        "CASE WHEN p.lost THEN 'lost' ELSE p.status END AS prior), "
        f"e AS ({sql.events.CLAIMED_FROM_CTE}) "
        "SELECT u.*, "
        + _json_rows(sql.STEP_COLUMNS, "steps", "task_id = u.id", " ORDER BY r.seq")
        + " AS j_steps, "
        + _json_rows(
            sql.SIGNAL_COLUMNS,
            "signals",
            "task_id = u.id AND consumed_seq IS NULL",
            " ORDER BY r.id",
        )
        + " AS j_signals, "
        + _json_rows(sql.APPROVAL_COLUMNS, "approvals", "task_id = u.id", "")
        + f" AS j_approvals FROM u CROSS JOIN ({ASYNC_COMMIT}) AS async_commit"
    )
    params += [now, qs, *extra, limit]
    params += [now, qs, *extra, limit, cap, now, qs, *extra, limit, limit]
    params += [worker, lease_until, now, now, error, digest, now]
    params += [now, worker, message]
    claimed: list[Claimed] = []
    lost: list[Task] = []
    for row in await conn.fetchall(text, params):
        if row["prior"] == "lost":
            lost.append(sql.task_from_row(row))
            continue
        steps = [sql.step_from_row(_float_fields(r, _STEP_FLOATS)) for r in row["j_steps"] or ()]
        claimed.append(
            Claimed(
                task=sql.task_from_row(row),
                steps={s.seq: s for s in steps},
                signals=[sql.signal_from_row(r) for r in row["j_signals"] or ()],
                approvals={
                    a.seq: a
                    for a in (
                        sql.approval_from_row(_float_fields(r, _APPROVAL_FLOATS))
                        for r in row["j_approvals"] or ()
                    )
                },
                recovered=row["prior"] == "running",
            )
        )
    return ClaimOutcome(claimed, sorted(lost, key=lambda t: t.id))
