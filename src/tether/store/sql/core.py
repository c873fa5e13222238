"""Connections, dialects, columns and rows: what every part of the shared SQL logic uses."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tether import serde
from tether.errors import TaskNotFound
from tether.models import (
    TASK_FIELDS,
    Approval,
    AttemptError,
    Budget,
    Event,
    SignalRecord,
    StepKind,
    StepRecord,
    StepStatus,
    Task,
    TaskError,
    TaskPhase,
    TaskStatus,
    WaitReason,
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
    text_agg: str = "group_concat"
    """The aggregate joining texts with a separator (`string_agg` on PostgreSQL)."""
    greatest: str = "MAX"
    """The scalar function of the larger of its arguments (`GREATEST` on PostgreSQL)."""
    least: str = "MIN"
    """The scalar function of the smaller of its arguments (`LEAST` on PostgreSQL)."""
    copy_rows: bool = False
    """Rows sent in bulk stream with COPY (cheaper than having the server derive them
    from other rows); on SQLite each sent row is a statement run bound from Python."""
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
    text_agg="string_agg",
    greatest="GREATEST",
    least="LEAST",
    copy_rows=True,
    committed_events=(
        " AND (txid < pg_snapshot_xmin(pg_current_snapshot())"
        " OR at < EXTRACT(EPOCH FROM now()) - 5)"
    ),
)

TASK_COLUMNS = ", ".join(TASK_FIELDS)
"""Every column a `Task` is read from: its fields, one column each."""
STEP_COLUMNS = (
    "task_id, seq, name, kind, status, attempts, result, error, started_at, finished_at, "
    "wake_at, meta, attempt_errors"
)
APPROVAL_COLUMNS = (
    "id, task_id, tenant, workflow, seq, status, risk, request, required, submitter, "
    "decisions, resolution, changes, reason, created_at, expires_at, on_timeout, decided_at"
)
SIGNAL_COLUMNS = "id, task_id, name, payload, created_at"
TERMINAL = ("succeeded", "failed", "cancelled")


SHORT_ID_MATCH = (
    "(length(id) >= %s AND (substr(id, 1, %s) = %s OR substr(id, length(id) - %s + 1, %s) = %s))"
)
"""An id begins or ends with a short id (`short_id_params`). `substr` with a start of at
least 1 means the same on both backends (LIKE would not: SQLite's ignores case)."""


def short_id_params(short: str) -> list[Any]:
    """The parameters of `SHORT_ID_MATCH` for `short`."""
    n = len(short)
    return [n, n, short, n, n, short]


# Row conversion -----------------------------------------------------------------------


def task_from_row(row: Row) -> Task:
    if isinstance(row, sqlite3.Row):
        # sqlite3.Row finds a column by comparing names one by one: for the ~26 columns
        # read here, one dict is cheaper than the lookups.
        row = dict(zip(row.keys(), row, strict=True))
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
        fork_root=row["fork_root"],
        parent_id=row["parent_id"],
        steps_done=row["steps_done"],
        current_step=row["current_step"],
        cancel_requested=bool(row["cancel_requested"]),
        phase=TaskPhase(row["phase"]),
        home_queue=row["home_queue"],
        concurrency_key=row["concurrency_key"],
        spend_budget=_budget(row["spend_budget"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _budget(text: str | None) -> Budget | None:
    return None if text is None else Budget.from_json(serde.loads(text))


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
        attempt_errors=_attempt_errors(row["attempt_errors"]),
    )


def _attempt_errors(text: str | None) -> tuple[AttemptError, ...]:
    """A step's failed attempts (NULL: none failed, or a row older than migration 7)."""
    if text is None:
        return ()
    return tuple(AttemptError.from_json(a) for a in serde.loads(text))


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


async def task_for_update(conn: Conn, d: Dialect, task_id: str, tenant: str | None) -> Row:
    row = await conn.fetchone(
        f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = %s{d.lock_rows}", (task_id,)
    )
    if row is None or (tenant is not None and row["tenant"] != tenant):
        raise TaskNotFound(task_id)
    return row


async def insert_approval(conn: Conn, a: Approval) -> None:
    """Store a new approval request (once: a second one at its task and seq is
    ignored). Its `approval.requested` event is the caller's to write."""
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


async def wake(conn: Conn, task_id: str, now: float) -> None:
    await conn.execute(
        "UPDATE tasks SET status = 'queued', run_at = %s, wait_reason = NULL, "
        "wait_signals = NULL, updated_at = %s WHERE id = %s AND status = 'waiting'",
        (now, now, task_id),
    )
