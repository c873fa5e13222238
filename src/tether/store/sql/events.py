"""The one writer of event rows: every row of `events` the store writes is shaped here.

Each event type of the catalogue (`tether.models.events`, rendered in `docs/events.md`)
has one builder below, which returns the row's values; the store's transactions insert
them with `INSERT_EVENT` or `insert`, in the transaction of the change they record. The
set-based paths that measured faster with the database deriving events from the rows it
just wrote (SQLite intake, claims, PostgreSQL's one-statement claim; ADRs 41, 45, 48)
take their `INSERT ... SELECT` text from here too, so the event's shape is written in
this one module either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tether import serde
from tether.models import Approval, StepStatus, TaskError, TaskStatus
from tether.models.events import EventType
from tether.store.base import Finish, NewTask, Release, StepWrite, Suspend
from tether.store.sql.core import Conn, Dialect

EVENT_COLUMNS = (
    "task_id, tenant, at, type, prior_status, new_status, attempt, worker, step, "
    "error_class, decision, data"
)
INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({', '.join(['%s'] * 12)})"
"""Insert one event row (the values a builder returned)."""

EventRow = tuple[Any, ...]
"""An event's values, in `EVENT_COLUMNS` order."""


def insert_select(select: str) -> str:
    """`INSERT INTO events` of the rows `select` yields, in `EVENT_COLUMNS` order."""
    return f"INSERT INTO events ({EVENT_COLUMNS}) {select}"


async def insert(conn: Conn, rows: Sequence[EventRow]) -> None:
    """Append event rows in order, in one go."""
    if rows:
        await conn.insert_rows("events", EVENT_COLUMNS, rows)


def _row(
    task_id: str,
    tenant: str,
    at: float,
    type_: EventType,
    *,
    prior: str | None = None,
    new: str | None = None,
    attempt: int | None = None,
    worker: str | None = None,
    step: str | None = None,
    error_class: str | None = None,
    decision: str | None = None,
    data: Any = None,
) -> EventRow:
    return (
        task_id,
        tenant,
        at,
        str(type_),
        prior,
        new,
        attempt,
        worker,
        step,
        error_class,
        decision,
        None if data is None else serde.dumps(data),
    )


# Intake and claims -------------------------------------------------------------------


def created(t: NewTask, now: float) -> EventRow:
    return _row(
        t.id,
        t.tenant,
        now,
        EventType.TASK_CREATED,
        new="queued",
        attempt=0,
        decision="forked" if t.forked_from else "submitted",
        data={"workflow": t.workflow, "by": t.created_by, "forked_from": t.forked_from},
    )


def held(t: NewTask, now: float) -> EventRow:
    """`task.waiting` of a new task its concurrency key does not admit yet (ADR 89)."""
    return _row(
        t.id,
        t.tenant,
        now,
        EventType.TASK_WAITING,
        prior="queued",
        new="waiting",
        attempt=0,
        decision="concurrency",
        data={"concurrency_key": t.concurrency_key},
    )


def started_eager(t: NewTask, now: float, worker: str | None) -> EventRow:
    return _row(
        t.id,
        t.tenant,
        now,
        EventType.TASK_STARTED,
        prior="queued",
        new="running",
        attempt=1,
        worker=worker,
        decision="eager",
    )


def created_from_tasks(d: Dialect) -> str:
    """`created` for the tasks whose ids are the one parameter after the time, derived
    by the database from the rows just written (params: now, ids)."""
    return insert_select(
        f"SELECT id, tenant, %s, '{EventType.TASK_CREATED}', NULL, "
        "'queued', 0, NULL, NULL, NULL, CASE WHEN forked_from IS NULL THEN 'submitted' "
        "ELSE 'forked' END, json_object('workflow', workflow, 'by', created_by, "
        f"'forked_from', forked_from) FROM tasks WHERE id {d.any_of} ORDER BY id"
    )


def started_eager_from_tasks(d: Dialect) -> str:
    """`started_eager`, derived by the database (params: now, worker, ids)."""
    return insert_select(
        f"SELECT id, tenant, %s, '{EventType.TASK_STARTED}', "
        "'queued', 'running', 1, %s, NULL, NULL, 'eager', NULL FROM tasks "
        f"WHERE id {d.any_of} ORDER BY id"
    )


def claimed_from_tasks(d: Dialect) -> str:
    """`task.started` of claimed tasks that all had one prior status, derived by the
    database (params: now, prior status, worker, decision, ids)."""
    return insert_select(
        f"SELECT id, tenant, %s, '{EventType.TASK_STARTED}', %s, "
        "'running', attempt, %s, NULL, NULL, %s, NULL FROM tasks "
        f"WHERE id {d.any_of} ORDER BY id"
    )


def claimed_decision(prior: str) -> str:
    """Why a task with status `prior` was started by a claim."""
    return "lease_expired" if prior == "running" else "claimed"


WORKER_LOST = "worker_lost"
"""The decision of the `task.failed` a claim writes instead of recovering a task whose
worker keeps being lost."""


def worker_lost(
    task_id: str,
    tenant: str,
    attempt: int,
    worker: str,
    *,
    lost_worker: str | None,
    expiries: int,
    message: str,
    now: float,
) -> EventRow:
    """`task.failed` written by `worker`'s claim in place of recovering the task: the
    lease of `lost_worker` (the run's) expired, the `expiries`-th time in a row."""
    return _row(
        task_id,
        tenant,
        now,
        EventType.TASK_FAILED,
        prior="running",
        new="failed",
        attempt=attempt,
        worker=worker,
        error_class="WorkerLost",
        decision=WORKER_LOST,
        data={"message": message, "lease_expiries": expiries, "lost_worker": lost_worker},
    )


CLAIMED_FROM_CTE = insert_select(
    "SELECT u.id, u.tenant, %s, CASE WHEN u.prior = 'lost' THEN "
    f"'{EventType.TASK_FAILED}' ELSE '{EventType.TASK_STARTED}' END, CASE WHEN u.prior = "
    "'lost' THEN 'running' ELSE u.prior END, u.status, u.attempt, %s, NULL, CASE WHEN "
    "u.prior = 'lost' THEN 'WorkerLost' END, CASE u.prior WHEN 'lost' THEN "
    f"'{WORKER_LOST}' WHEN 'running' THEN 'lease_expired' ELSE 'claimed' END, CASE WHEN "
    "u.prior = 'lost' THEN json_build_object('message', %s::text, 'lease_expiries', "
    "u.lease_expiries, 'lost_worker', u.lost_worker)::text END FROM u ORDER BY u.id"
)
"""The events of PostgreSQL's one-statement claim, for the tasks its CTE `u` returned
with their prior status (params: now, worker, message): `task.started` as
`claimed_decision` says, or `worker_lost`'s `task.failed` for a task it failed as lost
(prior status given as `lost`)."""


# Worker operations --------------------------------------------------------------------


def suspended(
    op: Suspend,
    tenant: str,
    worker: str,
    now: float,
    *,
    woken_by: str | None,
    run_at: float | None,
) -> EventRow:
    """`task.waiting`, or `task.queued` when what it waits for is there (`woken_by`)."""
    return _row(
        op.task_id,
        tenant,
        now,
        EventType.TASK_WAITING if woken_by is None else EventType.TASK_QUEUED,
        prior="running",
        new="waiting" if woken_by is None else "queued",
        attempt=op.attempt,
        worker=worker,
        decision=str(op.reason) if woken_by is None else woken_by,
        data={"run_at": run_at} if run_at is not None else None,
    )


def woken(task_id: str, tenant: str, attempt: int, now: float, decision: str) -> EventRow:
    """`task.queued` on a waiting task that something outside its run queued again:
    a child's end (`child_ended`), a step gate letting it through (`slot_freed`,
    `circuit_closed`), a decision on a budget it waits for (`budget_raised`)."""
    return _row(
        task_id,
        tenant,
        now,
        EventType.TASK_QUEUED,
        prior="waiting",
        new="queued",
        attempt=attempt,
        decision=decision,
    )


def released(op: Release, tenant: str, worker: str, now: float) -> EventRow:
    return _row(
        op.task_id,
        tenant,
        now,
        EventType.TASK_RELEASED,
        prior="running",
        new="queued",
        attempt=op.attempt,
        worker=worker,
        decision=op.decision,
        data=None if op.queue is None else {"queue": op.queue},
    )


_FINISHED_TYPES = {
    TaskStatus.SUCCEEDED: EventType.TASK_SUCCEEDED,
    TaskStatus.FAILED: EventType.TASK_FAILED,
    TaskStatus.CANCELLED: EventType.TASK_CANCELLED,
}


def finished(op: Finish, tenant: str, worker: str, now: float) -> EventRow:
    """`task.succeeded`, `task.failed` or `task.cancelled`: a run's end."""
    err = op.error
    return _row(
        op.task_id,
        tenant,
        now,
        _FINISHED_TYPES[op.status],
        prior="running",
        new=str(op.status),
        attempt=op.attempt,
        worker=worker,
        step=None if err is None else err.step,
        error_class=None if err is None else err.type,
        decision=op.decision,
        data=None if err is None else _failure_data(err),
    )


def _failure_data(err: TaskError) -> dict[str, Any]:
    data: dict[str, Any] = {"message": err.message}
    if err.compensated is not None:
        data["compensated"] = err.compensated
    return data


_STEP_TYPES = {
    StepStatus.SUCCEEDED: EventType.STEP_SUCCEEDED,
    StepStatus.FAILED: EventType.STEP_FAILED,
    StepStatus.PENDING: EventType.STEP_RETRYING,
}


def step(op: StepWrite, tenant: str, worker: str, now: float) -> EventRow | None:
    """The event of a `StepWrite`: outcomes and retries; a wait's pending entry has none.
    A retry or failure says what the last attempt raised, how it was classified and
    what was decided (its traceback stays in the step record: payloads stay small)."""
    rec = op.record
    if rec.status == StepStatus.PENDING and rec.error is None:
        return None
    data = {"seq": rec.seq, "kind": str(rec.kind), "attempts": rec.attempts, **rec.meta}
    decision = None
    if rec.status != StepStatus.SUCCEEDED and rec.attempt_errors:
        last = rec.attempt_errors[-1]
        decision = str(last.decision)
        data |= {
            "message": last.message,
            "transient": last.transient,
            "classified_by": last.classified_by,
            "reason": last.reason,
        }
        if rec.status == StepStatus.PENDING:
            data["retry_in"] = last.retry_in
    return _row(
        op.task_id,
        tenant,
        now,
        _STEP_TYPES[rec.status],
        attempt=op.attempt,
        worker=worker,
        step=rec.name,
        error_class=None if rec.error is None else rec.error.type,
        decision=decision,
        data=data,
    )


def finish_events(op: Finish, tenant: str, worker: str, now: float) -> list[EventRow]:
    """The events of a `Finish` that applied: its carried steps' (in order), then its own."""
    events = [step(s, tenant, worker, now) for s in op.steps]
    return [e for e in events if e is not None] + [finished(op, tenant, worker, now)]


# Approvals ----------------------------------------------------------------------------


def approval_opened(a: Approval, attempt: int, worker: str | None, now: float) -> EventRow:
    """`approval.requested`, or `approval.decided` when the policy decided at once."""
    return _row(
        a.task_id,
        a.tenant,
        now,
        EventType.APPROVAL_REQUESTED if a.status == "pending" else EventType.APPROVAL_DECIDED,
        attempt=attempt,
        worker=worker,
        decision=a.resolution or "review_required",
        data={"approval_id": a.id, "risk": a.risk, "required": a.required, "status": a.status},
    )


def approval_decision(a: Approval, entry: dict[str, Any], attempt: int, now: float) -> EventRow:
    """One reviewer's decision (`entry`: reviewer, approve, reason, changes)."""
    return _row(
        a.task_id,
        a.tenant,
        now,
        EventType.APPROVAL_DECISION,
        attempt=attempt,
        decision="approve" if entry["approve"] else "reject",
        data={
            "approval_id": a.id,
            "reviewer": entry["reviewer"],
            "reason": entry["reason"],
            "changes": entry["changes"],
        },
    )


def approval_decided(a: Approval, prior: str, new: str, attempt: int, now: float) -> EventRow:
    """An approval closed by its reviewers or its timeout (`a` as it now stands)."""
    return _row(
        a.task_id,
        a.tenant,
        now,
        EventType.APPROVAL_DECIDED,
        prior=prior,
        new=new,
        attempt=attempt,
        decision=f"{a.status}:{a.resolution}",
        data={"approval_id": a.id, "reason": a.reason, "changes": a.changes},
    )


# Control ------------------------------------------------------------------------------


def cancellation(
    task_id: str,
    tenant: str,
    prior: str,
    new: str,
    attempt: int,
    by: str | None,
    now: float,
    compensate: bool,
) -> EventRow:
    """`task.cancelled` for a task cancelled at once (`new` is `cancelled`), else
    `task.cancel_requested`: a run ends it (a running one, one queued to compensate
    first, or one compensating already)."""
    if new == "cancelled":
        return _row(
            task_id,
            tenant,
            now,
            EventType.TASK_CANCELLED,
            prior=prior,
            new=new,
            attempt=attempt,
            decision="cancel_requested",
            data={"by": by},
        )
    return _row(
        task_id,
        tenant,
        now,
        EventType.TASK_CANCEL_REQUESTED,
        prior=prior,
        new=new,
        attempt=attempt,
        decision="cancel_requested",
        data={"by": by, "compensate": compensate},
    )


def signal_received(
    task_id: str,
    tenant: str,
    prior: str,
    woke: bool,
    attempt: int,
    signal_id: int,
    name: str,
    now: float,
) -> EventRow:
    return _row(
        task_id,
        tenant,
        now,
        EventType.SIGNAL_RECEIVED,
        prior=prior,
        new="queued" if woke else prior,
        attempt=attempt,
        decision=f"signal:{name}",
        data={"signal_id": signal_id, "name": name},
    )


def forked(
    task_id: str,
    tenant: str,
    attempt: int,
    new_task: str,
    from_seq: int | None,
    by: str | None,
    now: float,
) -> EventRow:
    """Written on the original task when it is re-run as `new_task`."""
    return _row(
        task_id,
        tenant,
        now,
        EventType.TASK_FORKED,
        attempt=attempt,
        decision="rerun",
        data={"new_task": new_task, "from_seq": from_seq, "by": by},
    )
