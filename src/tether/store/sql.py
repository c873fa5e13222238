"""Transaction logic shared by the SQL stores, written once for both dialects.

Every function here runs inside a transaction the driver opened, against `Conn`: a
tiny async connection interface with `%s` placeholders and rows addressable by column
name. The SQLite driver runs these coroutines synchronously in its database thread
(they never suspend there); the PostgreSQL driver awaits them on psycopg connections.
Lock order, where it matters: the task row first, then anything that hangs off it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tether import serde
from tether.errors import IdempotencyConflict, InvalidTransition, TaskNotFound
from tether.models import (
    Event,
    StepKind,
    StepRecord,
    StepStatus,
    Task,
    TaskError,
    TaskStatus,
    WaitReason,
)
from tether.store.base import (
    ApiKey,
    Approval,
    ApprovalClosed,
    ApprovalFilter,
    Claimed,
    Eager,
    Finish,
    NewTask,
    Op,
    OpenApproval,
    Release,
    SignalRecord,
    StepWrite,
    Submitted,
    Suspend,
    TaskFilter,
)

Row = Mapping[str, Any]


class Conn(Protocol):
    """The part of a database connection the shared logic uses."""

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the number of rows it changed."""
        ...

    async def insert_rows(self, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        """Append rows, in order (no conflict handling, nothing returned): one prepared
        statement run per row on SQLite, one COPY on PostgreSQL."""
        ...


@dataclass(frozen=True)
class Dialect:
    """The few places where SQLite and PostgreSQL SQL differ."""

    name: str
    any_of: str
    """Fragment matching a column against a list parameter, e.g. `IN (SELECT ...)`."""
    lock_rows: str
    """Appended to a SELECT that picks rows to change (row locks on PostgreSQL)."""
    skip_locked: str
    """Appended to the claim SELECT (skip rows other workers are claiming)."""
    committed_events: str = ""
    """Condition that holds back events of transactions that may still commit below a
    newer visible id, so a reader tailing by id never skips one (see ADR 13)."""

    def list_param(self, values: Sequence[Any]) -> Any:
        return serde.dumps(list(values)) if self.name == "sqlite" else list(values)


SQLITE = Dialect(
    name="sqlite",
    any_of="IN (SELECT value FROM json_each(%s))",
    lock_rows="",
    skip_locked="",
)
POSTGRES = Dialect(
    name="postgres",
    any_of="= ANY(%s)",
    lock_rows=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    committed_events=(
        " AND (txid < pg_snapshot_xmin(pg_current_snapshot())"
        " OR at < EXTRACT(EPOCH FROM now()) - 5)"
    ),
)

TASK_COLUMNS = (
    "id, tenant, workflow, workflow_version, queue, priority, status, wait_reason, input, "
    "result, error, idempotency_key, correlation_id, created_by, attempt, run_at, "
    "started_at, finished_at, deadline, forked_from, fork_from_seq, steps_done, "
    "current_step, cancel_requested, created_at, updated_at"
)
STEP_COLUMNS = (
    "task_id, seq, name, kind, status, attempts, result, error, started_at, finished_at, "
    "wake_at, meta"
)
APPROVAL_COLUMNS = (
    "id, task_id, tenant, workflow, seq, status, risk, request, required, submitter, "
    "decisions, resolution, changes, reason, created_at, expires_at, on_timeout, decided_at"
)
SIGNAL_COLUMNS = "id, task_id, name, payload, created_at"
EVENT_COLUMNS = (
    "task_id, tenant, at, type, prior_status, new_status, attempt, worker, step, "
    "error_class, decision, data"
)
_INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({', '.join(['%s'] * 12)})"
_TERMINAL = ("succeeded", "failed", "cancelled")


# Row conversion -----------------------------------------------------------------------


def task_from_row(row: Row) -> Task:
    reason = row["wait_reason"]
    return Task(
        id=row["id"],
        tenant=row["tenant"],
        workflow=row["workflow"],
        workflow_version=row["workflow_version"],
        queue=row["queue"],
        priority=row["priority"],
        status=TaskStatus(row["status"]),
        wait_reason=WaitReason(reason) if reason else None,
        input=serde.loads(row["input"]),
        result=serde.loads(row["result"]),
        error=TaskError.from_json(serde.loads(row["error"])),
        idempotency_key=row["idempotency_key"],
        correlation_id=row["correlation_id"],
        created_by=row["created_by"],
        attempt=row["attempt"],
        run_at=row["run_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        deadline=row["deadline"],
        forked_from=row["forked_from"],
        fork_from_seq=row["fork_from_seq"],
        steps_done=row["steps_done"],
        current_step=row["current_step"],
        cancel_requested=bool(row["cancel_requested"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def step_from_row(row: Row) -> StepRecord:
    return StepRecord(
        task_id=row["task_id"],
        seq=row["seq"],
        name=row["name"],
        kind=StepKind(row["kind"]),
        status=StepStatus(row["status"]),
        attempts=row["attempts"],
        result=serde.loads(row["result"]),
        error=TaskError.from_json(serde.loads(row["error"])),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        wake_at=row["wake_at"],
        meta=serde.loads(row["meta"]) or {},
    )


def signal_from_row(row: Row) -> SignalRecord:
    return SignalRecord(
        row["id"], row["task_id"], row["name"], serde.loads(row["payload"]), row["created_at"]
    )


def approval_from_row(row: Row) -> Approval:
    return Approval(
        id=row["id"],
        task_id=row["task_id"],
        tenant=row["tenant"],
        workflow=row["workflow"],
        seq=row["seq"],
        status=row["status"],
        risk=row["risk"],
        request=serde.loads(row["request"]),
        required=row["required"],
        submitter=row["submitter"],
        decisions=serde.loads(row["decisions"]) or [],
        resolution=row["resolution"],
        changes=serde.loads(row["changes"]),
        reason=row["reason"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        on_timeout=row["on_timeout"],
        decided_at=row["decided_at"],
    )


def event_from_row(row: Row) -> Event:
    return Event(
        id=row["id"],
        task_id=row["task_id"],
        tenant=row["tenant"],
        at=row["at"],
        type=row["type"],
        prior_status=row["prior_status"],
        new_status=row["new_status"],
        attempt=row["attempt"],
        worker=row["worker"],
        step=row["step"],
        error_class=row["error_class"],
        decision=row["decision"],
        data=serde.loads(row["data"]),
    )


def _event(
    task_id: str,
    tenant: str,
    at: float,
    type_: str,
    *,
    prior: str | None = None,
    new: str | None = None,
    attempt: int | None = None,
    worker: str | None = None,
    step: str | None = None,
    error_class: str | None = None,
    decision: str | None = None,
    data: Any = None,
) -> tuple[Any, ...]:
    return (
        task_id,
        tenant,
        at,
        type_,
        prior,
        new,
        attempt,
        worker,
        step,
        error_class,
        decision,
        None if data is None else serde.dumps(data),
    )


async def _task_for_update(conn: Conn, d: Dialect, task_id: str, tenant: str | None) -> Row:
    row = await conn.fetchone(
        f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = %s{d.lock_rows}", (task_id,)
    )
    if row is None or (tenant is not None and row["tenant"] != tenant):
        raise TaskNotFound(task_id)
    return row


# Intake -------------------------------------------------------------------------------


async def submit(
    conn: Conn, d: Dialect, tasks: list[NewTask], now: float, eager: Eager | None = None
) -> list[Submitted]:
    out: list[Submitted] = []
    fresh: list[NewTask] = []
    started: set[str] = set()  # created already claimed for `eager`
    for t in tasks:
        if t.idempotency_key is not None:
            key = (t.tenant, t.idempotency_key)
            # Claim the key with an upsert, not a read-then-insert: on PostgreSQL two
            # concurrent submits cannot lock a row that does not exist yet, but the
            # second INSERT waits for the first and then sees its key.
            claimed = await conn.fetchone(
                "INSERT INTO idempotency_keys (tenant, key, input_hash, task_id, expires_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant, key) DO UPDATE SET "
                "input_hash = excluded.input_hash, task_id = excluded.task_id, "
                "expires_at = excluded.expires_at WHERE idempotency_keys.expires_at <= %s "
                "RETURNING task_id",
                (*key, t.input_hash, t.id, now + t.idempotency_ttl, now),
            )
            if claimed is None:  # a live key
                row = await conn.fetchone(
                    "SELECT input_hash, task_id FROM idempotency_keys "
                    f"WHERE tenant = %s AND key = %s{d.lock_rows}",
                    key,
                )
                assert row is not None
                if row["input_hash"] != t.input_hash:
                    raise IdempotencyConflict(t.idempotency_key, row["task_id"])
                existing = await get_task(conn, row["task_id"], t.tenant)
                if existing is None:  # the same key twice in this batch
                    existing = next((s.task for s in out if s.task.id == row["task_id"]), None)
                if existing is not None:
                    out.append(Submitted(existing, created=False))
                    continue
                # The key outlived its task (purged): it now names the new task.
                await conn.execute(
                    "UPDATE idempotency_keys SET input_hash = %s, task_id = %s, expires_at = %s "
                    "WHERE tenant = %s AND key = %s",
                    (t.input_hash, t.id, now + t.idempotency_ttl, *key),
                )
        fresh.append(t)
        run_at = now if t.run_at is None else t.run_at
        claim = (
            eager is not None
            and len(started) < eager.limit
            and t.queue in eager.queues
            and run_at <= now
            and t.forked_from is None
        )
        task = Task(
            id=t.id,
            tenant=t.tenant,
            workflow=t.workflow,
            workflow_version=t.workflow_version,
            queue=t.queue,
            priority=t.priority,
            status=TaskStatus.RUNNING if claim else TaskStatus.QUEUED,
            input=serde.loads(t.input),
            created_at=now,
            updated_at=now,
            idempotency_key=t.idempotency_key,
            correlation_id=t.correlation_id or t.id,
            created_by=t.created_by,
            attempt=1 if claim else 0,
            run_at=run_at,
            started_at=now if claim else None,
            deadline=t.deadline,
            forked_from=t.forked_from,
            fork_from_seq=t.fork_from_seq,
        )
        if claim:
            started.add(t.id)
            out.append(Submitted(task, True, Claimed(task, {}, [], {})))
        else:
            out.append(Submitted(task, created=True))
    if fresh:
        owner, lease = (eager.worker, eager.lease_until) if eager is not None else (None, None)
        await conn.insert_rows(
            "tasks",
            "id, tenant, workflow, workflow_version, queue, priority, status, input, "
            "idempotency_key, correlation_id, created_by, run_at, deadline, forked_from, "
            "fork_from_seq, created_at, updated_at, attempt, lease_owner, lease_expires_at, "
            "started_at",
            [
                (
                    t.id,
                    t.tenant,
                    t.workflow,
                    t.workflow_version,
                    t.queue,
                    t.priority,
                    "running" if t.id in started else "queued",
                    t.input,
                    t.idempotency_key,
                    t.correlation_id or t.id,
                    t.created_by,
                    now if t.run_at is None else t.run_at,
                    t.deadline,
                    t.forked_from,
                    t.fork_from_seq,
                    now,
                    now,
                    *((1, owner, lease, now) if t.id in started else (0, None, None, None)),
                )
                for t in fresh
            ],
        )
        await insert_events(
            conn,
            [
                _event(
                    t.id,
                    t.tenant,
                    now,
                    "task.created",
                    new="queued",
                    attempt=0,
                    decision="forked" if t.forked_from else "submitted",
                    data={"workflow": t.workflow, "by": t.created_by, "forked_from": t.forked_from},
                )
                for t in fresh
            ]
            + [
                _event(
                    t.id,
                    t.tenant,
                    now,
                    "task.started",
                    prior="queued",
                    new="running",
                    attempt=1,
                    worker=owner,
                    decision="eager",
                )
                for t in fresh
                if t.id in started
            ],
        )
    return out


# Queries ------------------------------------------------------------------------------


async def get_task(conn: Conn, task_id: str, tenant: str | None) -> Task | None:
    row = await conn.fetchone(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = %s", (task_id,))
    if row is None or (tenant is not None and row["tenant"] != tenant):
        return None
    return task_from_row(row)


async def get_tasks(conn: Conn, d: Dialect, task_ids: Sequence[str]) -> dict[str, Task]:
    """The tasks of `task_ids` that exist, by id (any tenant: the caller filters)."""
    found: dict[str, Task] = {}
    for start in range(0, len(task_ids), 500):
        chunk = task_ids[start : start + 500]
        for row in await conn.fetchall(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE id {d.any_of}", (d.list_param(chunk),)
        ):
            found[row["id"]] = task_from_row(row)
    return found


async def list_tasks(conn: Conn, d: Dialect, flt: TaskFilter) -> list[Task]:
    where: list[str] = []
    params: list[Any] = []
    if flt.tenant is not None:
        where.append("tenant = %s")
        params.append(flt.tenant)
    if flt.status:
        where.append(f"status {d.any_of}")
        params.append(d.list_param([str(s) for s in flt.status]))
    for column, value in (
        ("workflow", flt.workflow),
        ("correlation_id", flt.correlation_id),
        ("forked_from", flt.forked_from),
        ("error_fingerprint", flt.error_fingerprint),
    ):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if flt.created_after is not None:
        where.append("created_at >= %s")
        params.append(flt.created_after)
    if flt.created_before is not None:
        where.append("created_at < %s")
        params.append(flt.created_before)
    if flt.after_id is not None:
        where.append("id < %s")
        params.append(flt.after_id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    params.append(flt.limit)
    rows = await conn.fetchall(
        f"SELECT {TASK_COLUMNS} FROM tasks {clause} ORDER BY id DESC LIMIT %s", params
    )
    return [task_from_row(r) for r in rows]


async def get_steps(conn: Conn, task_id: str) -> list[StepRecord]:
    rows = await conn.fetchall(
        f"SELECT {STEP_COLUMNS} FROM steps WHERE task_id = %s ORDER BY seq", (task_id,)
    )
    return [step_from_row(r) for r in rows]


async def list_events(
    conn: Conn, d: Dialect, tenant: str | None, task_id: str | None, after: int, limit: int
) -> list[Event]:
    where = ["id > %s" + d.committed_events]
    params: list[Any] = [after]
    if tenant is not None:
        where.append("tenant = %s")
        params.append(tenant)
    if task_id is not None:
        where.append("task_id = %s")
        params.append(task_id)
    params.append(limit)
    rows = await conn.fetchall(
        f"SELECT id, {EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT %s",
        params,
    )
    return [event_from_row(r) for r in rows]


async def count_by_status(conn: Conn, tenant: str | None) -> dict[tuple[str, str], int]:
    sql = "SELECT queue, status, COUNT(*) AS n FROM tasks"
    params: tuple[Any, ...] = ()
    if tenant is not None:
        sql += " WHERE tenant = %s"
        params = (tenant,)
    rows = await conn.fetchall(sql + " GROUP BY queue, status", params)
    return {(r["queue"], r["status"]): int(r["n"]) for r in rows}


async def oldest_queued(conn: Conn, now: float) -> dict[str, float]:
    rows = await conn.fetchall(
        "SELECT queue, MIN(run_at) AS oldest FROM tasks "
        "WHERE status = 'queued' AND run_at <= %s GROUP BY queue",
        (now,),
    )
    return {r["queue"]: max(0.0, now - float(r["oldest"])) for r in rows}


async def next_wake(conn: Conn, d: Dialect, queues: list[str]) -> float | None:
    qs = d.list_param(queues)
    best: float | None = None
    for status in ("queued", "waiting"):
        row = await conn.fetchone(
            f"SELECT MIN(run_at) AS due FROM tasks WHERE status = %s AND queue {d.any_of} "
            "AND run_at IS NOT NULL",
            (status, qs),
        )
        if row is not None and row["due"] is not None:
            due = float(row["due"])
            best = due if best is None else min(best, due)
    return best


# Claiming -----------------------------------------------------------------------------


def queue_match(d: Dialect, queues: list[str]) -> tuple[str, Any]:
    """A condition on `queue` for a claim, and its parameter. One queue (the usual case)
    is an equality: the `tasks_queued` index then yields rows in claim order and the
    scan stops at the limit; with a list it yields them per queue, so the database
    reads and sorts the whole backlog of those queues for every claim."""
    if len(queues) == 1:
        return "queue = %s", queues[0]
    return f"queue {d.any_of}", d.list_param(queues)


async def claim(
    conn: Conn,
    d: Dialect,
    worker: str,
    queues: list[str],
    limit: int,
    now: float,
    lease_until: float,
    workflows: list[str] | None = None,
) -> list[Claimed]:
    in_queues, qs = queue_match(d, queues)
    only = ""
    if workflows is not None:  # a worker takes only what it can run (rolling deploys)
        only = f" AND workflow {d.any_of}"
    picked: list[Row] = []
    # Three cheap index scans: new work, due timers and backoffs, expired leases.
    for condition, order, params in (
        ("status = 'queued' AND run_at <= %s", "priority DESC, run_at", (now,)),
        ("status = 'waiting' AND run_at <= %s", "run_at", (now,)),
        ("status = 'running' AND lease_expires_at < %s", "lease_expires_at", (now,)),
    ):
        room = limit - len(picked)
        if room <= 0:
            break
        picked += await conn.fetchall(
            f"SELECT id, status FROM tasks WHERE {condition} AND {in_queues}{only} "
            f"ORDER BY {order} LIMIT %s{d.skip_locked}",
            (*params, qs, *(() if workflows is None else (d.list_param(workflows),)), room),
        )
    if not picked:
        return []
    prior = {r["id"]: r["status"] for r in picked}
    ids = d.list_param(list(prior))
    rows = await conn.fetchall(
        "UPDATE tasks SET status = 'running', attempt = attempt + 1, lease_owner = %s, "
        "lease_expires_at = %s, started_at = COALESCE(started_at, %s), updated_at = %s, "
        f"wait_reason = NULL, wait_signals = NULL WHERE id {d.any_of} RETURNING {TASK_COLUMNS}",
        (worker, lease_until, now, now, ids),
    )
    tasks = [task_from_row(r) for r in rows]
    await insert_events(
        conn,
        [
            _event(
                t.id,
                t.tenant,
                now,
                "task.started",
                prior=prior[t.id],
                new="running",
                attempt=t.attempt,
                worker=worker,
                decision="lease_expired" if prior[t.id] == "running" else "claimed",
            )
            for t in tasks
        ],
    )
    steps: dict[str, dict[int, StepRecord]] = {t.id: {} for t in tasks}
    for r in await conn.fetchall(
        f"SELECT {STEP_COLUMNS} FROM steps WHERE task_id {d.any_of} ORDER BY seq", (ids,)
    ):
        steps[r["task_id"]][r["seq"]] = step_from_row(r)
    signals: dict[str, list[SignalRecord]] = {t.id: [] for t in tasks}
    for r in await conn.fetchall(
        f"SELECT {SIGNAL_COLUMNS} FROM signals "
        f"WHERE task_id {d.any_of} AND consumed_seq IS NULL ORDER BY id",
        (ids,),
    ):
        signals[r["task_id"]].append(signal_from_row(r))
    approvals: dict[str, dict[int, Approval]] = {t.id: {} for t in tasks}
    for r in await conn.fetchall(
        f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE task_id {d.any_of}", (ids,)
    ):
        approvals[r["task_id"]][r["seq"]] = approval_from_row(r)
    return [
        Claimed(
            task=t,
            steps=steps[t.id],
            signals=signals[t.id],
            approvals=approvals[t.id],
            recovered=prior[t.id] == "running",
        )
        for t in tasks
    ]


async def heartbeat(
    conn: Conn, d: Dialect, worker: str, task_ids: list[str], lease_until: float
) -> dict[str, bool]:
    rows = await conn.fetchall(
        "UPDATE tasks SET lease_expires_at = %s WHERE lease_owner = %s AND status = 'running' "
        f"AND id {d.any_of} RETURNING id, cancel_requested",
        (lease_until, worker, d.list_param(task_ids)),
    )
    return {r["id"]: bool(r["cancel_requested"]) for r in rows}


# Worker operations ----------------------------------------------------------------------


async def insert_events(conn: Conn, rows: Sequence[tuple[Any, ...]]) -> None:
    """Append event rows in order, in one go."""
    if rows:
        await conn.insert_rows("events", EVENT_COLUMNS, rows)


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
        if sql is _INSERT_EVENT:
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
    await insert_events(conn, buffered.events)
    return results


async def _fenced_task(conn: Conn, d: Dialect, task_id: str, attempt: int) -> Row | None:
    return await conn.fetchone(
        f"SELECT tenant, status, queue, cancel_requested FROM tasks WHERE id = %s AND attempt = %s "
        f"AND status = 'running'{d.lock_rows}",
        (task_id, attempt),
    )


async def apply_op(conn: Conn, d: Dialect, op: Op, worker: str, now: float) -> bool:
    """Apply one worker operation; False when the worker no longer holds the task."""
    if isinstance(op, StepWrite):
        return await _step_write(conn, op, worker, now)
    if isinstance(op, Finish):
        return await _finish(conn, op, worker, now)
    row = await _fenced_task(conn, d, op.task_id, op.attempt)
    if row is None:
        return False
    tenant = row["tenant"]
    if isinstance(op, OpenApproval):
        await _open_approval(conn, op.approval, op.attempt, worker, now)
    elif isinstance(op, Suspend):
        # A cancellation requested while the task ran must not be parked with it: wake
        # it, and its next run ends it as cancelled.
        woken, cause = bool(row["cancel_requested"]), "cancel_requested"
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
                    "SELECT a.id FROM approvals a WHERE a.task_id = %s AND a.status <> "
                    "'pending' AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.task_id = "
                    "a.task_id AND s.seq = a.seq AND s.status = 'succeeded') LIMIT 1",
                    (op.task_id,),
                )
                is not None
            )
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
            _INSERT_EVENT,
            _event(
                op.task_id,
                tenant,
                now,
                "task.queued" if woken else "task.waiting",
                prior="running",
                new=status,
                attempt=op.attempt,
                worker=worker,
                decision=cause if woken else str(op.reason),
                data={"run_at": run_at} if run_at is not None else None,
            ),
        )
    elif isinstance(op, Release):
        await conn.execute(
            "UPDATE tasks SET status = 'queued', run_at = %s, lease_owner = NULL, "
            "lease_expires_at = NULL, updated_at = %s WHERE id = %s",
            (now, now, op.task_id),
        )
        await conn.execute(
            _INSERT_EVENT,
            _event(
                op.task_id,
                tenant,
                now,
                "task.released",
                prior="running",
                new="queued",
                attempt=op.attempt,
                worker=worker,
                decision=op.decision,
            ),
        )
    return True


def finish_params(op: Finish) -> tuple[Any, ...]:
    """(status, result, error, error_fingerprint) written by a `Finish`."""
    err = op.error
    return (
        str(op.status),
        op.result,
        None if err is None else serde.dumps(err.to_json()),
        None if err is None else err.fingerprint,
    )


def finish_event(op: Finish, tenant: str, worker: str, now: float) -> tuple[Any, ...]:
    err = op.error
    return _event(
        op.task_id,
        tenant,
        now,
        f"task.{op.status}",
        prior="running",
        new=str(op.status),
        attempt=op.attempt,
        worker=worker,
        step=None if err is None else err.step,
        error_class=None if err is None else err.type,
        decision=op.decision,
        data=None if err is None else {"message": err.message},
    )


async def _finish(conn: Conn, op: Finish, worker: str, now: float) -> bool:
    for step in op.steps:
        # Fenced like the finish below (same transaction, same outcome); the step rows go
        # first, while the task is not terminal yet (a trigger guards terminal step logs).
        inserted = await conn.execute(
            f"INSERT INTO steps ({STEP_COLUMNS}) SELECT {', '.join(['%s'] * 12)} "
            "WHERE EXISTS (SELECT 1 FROM tasks WHERE id = %s AND attempt = %s "
            f"AND status = 'running') {STEP_UPSERT}",
            (*step_params(step), op.task_id, op.attempt),
        )
        if not inserted:
            return False
        if step.consume_signal is not None:
            await consume_signal(conn, step)
    progress = [s.record for s in op.steps]
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
            sum(1 for r in progress if r.status == StepStatus.SUCCEEDED),
            progress[-1].name if progress else None,
            op.task_id,
            op.attempt,
        ),
    )
    if row is None:
        return False
    for step in op.steps:
        event = step_event(step, row["tenant"], worker, now)
        if event is not None:
            await conn.execute(_INSERT_EVENT, event)
    await conn.execute(_INSERT_EVENT, finish_event(op, row["tenant"], worker, now))
    return True


async def consume_signal(conn: Conn, op: StepWrite) -> None:
    await conn.execute(
        "UPDATE signals SET consumed_seq = %s WHERE id = %s AND consumed_seq IS NULL",
        (op.record.seq, op.consume_signal),
    )


STEP_UPSERT = (
    "ON CONFLICT (task_id, seq) DO UPDATE SET status = excluded.status, "
    "attempts = excluded.attempts, result = excluded.result, error = excluded.error, "
    "finished_at = excluded.finished_at, wake_at = excluded.wake_at, meta = excluded.meta "
    "WHERE steps.status = 'pending'"
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
    )


_STEP_EVENT_TYPES = {
    StepStatus.SUCCEEDED: "step.succeeded",
    StepStatus.FAILED: "step.failed",
    StepStatus.PENDING: "step.retrying",
}


def step_event(op: StepWrite, tenant: str, worker: str, now: float) -> tuple[Any, ...] | None:
    """The event of a `StepWrite`: outcomes and retries; a wait's pending entry has none."""
    rec = op.record
    if rec.status == StepStatus.PENDING and rec.error is None:
        return None
    return _event(
        op.task_id,
        tenant,
        now,
        _STEP_EVENT_TYPES[rec.status],
        attempt=op.attempt,
        worker=worker,
        step=rec.name,
        error_class=None if rec.error is None else rec.error.type,
        data={"seq": rec.seq, "kind": str(rec.kind), "attempts": rec.attempts, **rec.meta},
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
    await conn.execute(
        f"INSERT INTO steps ({STEP_COLUMNS}) VALUES ({', '.join(['%s'] * 12)}) {STEP_UPSERT}",
        step_params(op),
    )
    if op.consume_signal is not None:
        await consume_signal(conn, op)
    event = step_event(op, row["tenant"], worker, now)
    if event is not None:
        await conn.execute(_INSERT_EVENT, event)
    return True


async def _open_approval(conn: Conn, a: Approval, attempt: int, worker: str, now: float) -> None:
    await conn.execute(
        f"INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES ({', '.join(['%s'] * 18)}) "
        "ON CONFLICT (task_id, seq) DO NOTHING",
        (
            a.id,
            a.task_id,
            a.tenant,
            a.workflow,
            a.seq,
            a.status,
            a.risk,
            serde.dumps(a.request),
            a.required,
            a.submitter,
            serde.dumps(a.decisions),
            a.resolution,
            None if a.changes is None else serde.dumps(a.changes),
            a.reason,
            a.created_at,
            a.expires_at,
            a.on_timeout,
            a.decided_at,
        ),
    )
    await conn.execute(
        _INSERT_EVENT,
        _event(
            a.task_id,
            a.tenant,
            now,
            "approval.requested" if a.status == "pending" else "approval.decided",
            attempt=attempt,
            worker=worker,
            decision=a.resolution or "review_required",
            data={"approval_id": a.id, "risk": a.risk, "required": a.required, "status": a.status},
        ),
    )


# Control ------------------------------------------------------------------------------


async def cancel(
    conn: Conn, d: Dialect, task_id: str, tenant: str | None, by: str | None, now: float
) -> Task:
    row = await _task_for_update(conn, d, task_id, tenant)
    status = row["status"]
    if status in _TERMINAL:
        raise InvalidTransition(f"task {task_id} is already {status}")
    if status == "running":
        await conn.execute(
            "UPDATE tasks SET cancel_requested = 1, updated_at = %s WHERE id = %s", (now, task_id)
        )
        event, new = "task.cancel_requested", "running"
    else:
        await conn.execute(
            "UPDATE tasks SET status = 'cancelled', cancel_requested = 1, finished_at = %s, "
            "updated_at = %s, run_at = NULL, lease_owner = NULL, lease_expires_at = NULL "
            "WHERE id = %s",
            (now, now, task_id),
        )
        # Its open approvals leave the inbox: nobody may decide for a cancelled task.
        await conn.execute(
            "UPDATE approvals SET status = 'rejected', resolution = 'cancelled', "
            "decided_at = %s WHERE task_id = %s AND status = 'pending'",
            (now, task_id),
        )
        event, new = "task.cancelled", "cancelled"
    await conn.execute(
        _INSERT_EVENT,
        _event(
            task_id,
            row["tenant"],
            now,
            event,
            prior=status,
            new=new,
            attempt=row["attempt"],
            decision="cancel_requested",
            data={"by": by},
        ),
    )
    task = await get_task(conn, task_id, None)
    assert task is not None
    return task


async def send_signal(
    conn: Conn,
    d: Dialect,
    task_id: str,
    tenant: str | None,
    name: str,
    payload: str,
    now: float,
) -> SignalRecord:
    row = await _task_for_update(conn, d, task_id, tenant)
    if row["status"] in _TERMINAL:
        raise InvalidTransition(f"task {task_id} is {row['status']} and takes no more signals")
    sig = await conn.fetchone(
        "INSERT INTO signals (task_id, name, payload, created_at) VALUES (%s, %s, %s, %s) "
        "RETURNING id",
        (task_id, name, payload, now),
    )
    assert sig is not None
    waits_for = await conn.fetchone("SELECT wait_signals FROM tasks WHERE id = %s", (task_id,))
    woke = row["status"] == "waiting" and name in (
        serde.loads(waits_for["wait_signals"] if waits_for else None) or []
    )
    if woke:
        await _wake(conn, task_id, now)
    await conn.execute(
        _INSERT_EVENT,
        _event(
            task_id,
            row["tenant"],
            now,
            "signal.received",
            prior=row["status"],
            new="queued" if woke else row["status"],
            attempt=row["attempt"],
            decision=f"signal:{name}",
            data={"signal_id": sig["id"], "name": name},
        ),
    )
    return SignalRecord(sig["id"], task_id, name, serde.loads(payload), now)


async def _wake(conn: Conn, task_id: str, now: float) -> None:
    await conn.execute(
        "UPDATE tasks SET status = 'queued', run_at = %s, wait_reason = NULL, "
        "wait_signals = NULL, updated_at = %s WHERE id = %s AND status = 'waiting'",
        (now, now, task_id),
    )


async def fork(
    conn: Conn,
    d: Dialect,
    task_id: str,
    tenant: str | None,
    new: NewTask,
    from_seq: int | None,
    now: float,
) -> Task:
    row = await _task_for_update(conn, d, task_id, tenant)
    if row["status"] not in _TERMINAL:
        raise InvalidTransition(f"task {task_id} is {row['status']}; only ended tasks re-run")
    new.forked_from = task_id
    new.fork_from_seq = from_seq
    (sub,) = await submit(conn, d, [new], now)
    limit = from_seq if from_seq is not None else 2**62
    await conn.execute(
        f"INSERT INTO steps ({STEP_COLUMNS}) SELECT %s, seq, name, kind, status, attempts, "
        "result, error, started_at, finished_at, wake_at, meta FROM steps "
        "WHERE task_id = %s AND status = 'succeeded' AND seq < %s",
        (new.id, task_id, limit),
    )
    await conn.execute(
        "UPDATE tasks SET steps_done = (SELECT COUNT(*) FROM steps WHERE task_id = %s) "
        "WHERE id = %s",
        (new.id, new.id),
    )
    await conn.execute(
        _INSERT_EVENT,
        _event(
            task_id,
            row["tenant"],
            now,
            "task.forked",
            attempt=row["attempt"],
            decision="rerun",
            data={"new_task": new.id, "from_seq": from_seq, "by": new.created_by},
        ),
    )
    return sub.task


# Approvals ----------------------------------------------------------------------------


async def get_approval(conn: Conn, approval_id: str, tenant: str | None) -> Approval | None:
    row = await conn.fetchone(
        f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = %s", (approval_id,)
    )
    if row is None or (tenant is not None and row["tenant"] != tenant):
        return None
    return approval_from_row(row)


async def list_approvals(conn: Conn, flt: ApprovalFilter) -> list[Approval]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("tenant", flt.tenant), ("status", flt.status), ("risk", flt.risk)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    params.append(flt.limit)
    rows = await conn.fetchall(
        f"SELECT {APPROVAL_COLUMNS} FROM approvals {clause} ORDER BY created_at DESC LIMIT %s",
        params,
    )
    return [approval_from_row(r) for r in rows]


async def _approval_for_update(
    conn: Conn, d: Dialect, approval_id: str, tenant: str | None
) -> tuple[Row, Approval]:
    """The approval and its task's row, locked. Every change to an approval happens
    under its task's row lock, so the approval is read again once the lock is held: a
    decision or timeout committed meanwhile is seen, never overwritten."""
    row = await conn.fetchone("SELECT task_id, tenant FROM approvals WHERE id = %s", (approval_id,))
    if row is None or (tenant is not None and row["tenant"] != tenant):
        raise TaskNotFound(approval_id)
    task_row = await _task_for_update(conn, d, row["task_id"], None)
    fresh = await conn.fetchone(
        f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = %s", (approval_id,)
    )
    if fresh is None:  # purged meanwhile
        raise TaskNotFound(approval_id)
    return task_row, approval_from_row(fresh)


async def decide(
    conn: Conn,
    d: Dialect,
    approval_id: str,
    tenant: str | None,
    decision: dict[str, Any],
    now: float,
) -> tuple[Approval, str | None]:
    """Record a decision; returns the approval and, when the decision was refused
    because the approval had timed out (the timeout is committed), the refusal."""
    task_row, a = await _approval_for_update(conn, d, approval_id, tenant)
    if a.status != "pending":
        raise ApprovalClosed(f"approval {a.id} is already {a.status}", a)
    if a.expires_at is not None and now >= a.expires_at:
        a = await _close_approval(
            conn,
            task_row,
            a,
            "approved" if a.on_timeout == "approve" else "rejected",
            "timeout",
            now,
        )
        return a, f"approval {a.id} timed out and was {a.status}"
    reviewer = str(decision["reviewer"])
    if a.submitter is not None and reviewer == a.submitter:
        raise InvalidTransition("the submitter of a task cannot decide on its own approval")
    if any(x["reviewer"] == reviewer for x in a.decisions):
        raise InvalidTransition(f"{reviewer} has already decided on approval {a.id}")
    entry = {
        "reviewer": reviewer,
        "approve": bool(decision["approve"]),
        "reason": decision.get("reason"),
        "changes": decision.get("changes"),
        "at": now,
    }
    a.decisions.append(entry)
    approvals = sum(1 for x in a.decisions if x["approve"])
    await conn.execute(
        "UPDATE approvals SET decisions = %s WHERE id = %s",
        (serde.dumps(a.decisions), a.id),
    )
    await conn.execute(
        _INSERT_EVENT,
        _event(
            a.task_id,
            a.tenant,
            now,
            "approval.decision",
            attempt=task_row["attempt"],
            decision="approve" if entry["approve"] else "reject",
            data={
                "approval_id": a.id,
                "reviewer": reviewer,
                "reason": entry["reason"],
                "changes": entry["changes"],
            },
        ),
    )
    if not entry["approve"]:
        a.reason = decision.get("reason")
        a = await _close_approval(conn, task_row, a, "rejected", "reviewer", now)
    elif approvals >= a.required:
        changes: dict[str, Any] = {}
        for x in a.decisions:
            changes.update(x.get("changes") or {})
        a.changes = changes or None
        a.reason = decision.get("reason")
        a = await _close_approval(conn, task_row, a, "approved", "reviewer", now)
    return a, None


async def _close_approval(
    conn: Conn, task_row: Row, a: Approval, status: str, resolution: str, now: float
) -> Approval:
    changed = await conn.execute(
        "UPDATE approvals SET status = %s, resolution = %s, changes = %s, reason = %s, "
        "decided_at = %s WHERE id = %s AND status = 'pending'",
        (
            status,
            resolution,
            None if a.changes is None else serde.dumps(a.changes),
            a.reason,
            now,
            a.id,
        ),
    )
    if changed:
        a.status, a.resolution, a.decided_at = status, resolution, now
        if task_row["status"] == "waiting":
            await _wake(conn, a.task_id, now)
        await conn.execute(
            _INSERT_EVENT,
            _event(
                a.task_id,
                a.tenant,
                now,
                "approval.decided",
                prior=task_row["status"],
                new="queued" if task_row["status"] == "waiting" else task_row["status"],
                attempt=task_row["attempt"],
                decision=f"{status}:{resolution}",
                data={"approval_id": a.id, "reason": a.reason, "changes": a.changes},
            ),
        )
    return a


async def expire_approval(conn: Conn, d: Dialect, approval_id: str, now: float) -> Approval:
    """Apply an approval's timeout if it is still pending; return the outcome that stands."""
    task_row, a = await _approval_for_update(conn, d, approval_id, None)
    if a.status == "pending":
        outcome = "approved" if a.on_timeout == "approve" else "rejected"
        a = await _close_approval(conn, task_row, a, outcome, "timeout", now)
    return a


# Housekeeping -------------------------------------------------------------------------


async def purge(conn: Conn, d: Dialect, finished_before: float, batch: int) -> int:
    rows = await conn.fetchall(
        "SELECT id FROM tasks WHERE finished_at < %s ORDER BY finished_at "
        f"LIMIT %s{d.skip_locked}",  # concurrent sweepers take disjoint batches
        (finished_before, batch),
    )
    if not rows:
        return 0
    ids = d.list_param([r["id"] for r in rows])
    for table, column in (
        ("steps", "task_id"),
        ("signals", "task_id"),
        ("approvals", "task_id"),
        ("events", "task_id"),
        ("idempotency_keys", "task_id"),
        ("tasks", "id"),
    ):
        await conn.execute(f"DELETE FROM {table} WHERE {column} {d.any_of}", (ids,))
    return len(rows)


# API keys -----------------------------------------------------------------------------


async def create_api_key(conn: Conn, key: ApiKey) -> None:
    await conn.execute(
        "INSERT INTO api_keys (id, tenant, name, roles, secret_hash, created_at, revoked_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            key.id,
            key.tenant,
            key.name,
            serde.dumps(key.roles),
            key.secret_hash,
            key.created_at,
            key.revoked_at,
        ),
    )


async def get_api_key(conn: Conn, key_id: str) -> ApiKey | None:
    row = await conn.fetchone(
        "SELECT id, tenant, name, roles, secret_hash, created_at, revoked_at FROM api_keys "
        "WHERE id = %s",
        (key_id,),
    )
    if row is None:
        return None
    return ApiKey(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        roles=list(serde.loads(row["roles"]) or []),
        secret_hash=row["secret_hash"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def revoke_api_key(conn: Conn, key_id: str, tenant: str | None, now: float) -> bool:
    sql = "UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL"
    params: list[Any] = [now, key_id]
    if tenant is not None:
        sql += " AND tenant = %s"
        params.append(tenant)
    return await conn.execute(sql, params) > 0
