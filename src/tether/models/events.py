"""The append-only audit log of a task, and the catalogue of what it can hold.

Every event row the store writes has one of the types in `EventType`, and `EVENT_CATALOGUE`
says of each when it is written, which of the optional columns it fills and which
payload (`data`) fields it carries. Webhooks, the console's timeline and the audit log
subscribe to these names; `docs/events.md` is this catalogue, rendered (a test keeps the
two equal), and a check run by the test suite on both backends holds every written
event to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    """The name of an event: `<subject>.<what happened>`."""

    TASK_CREATED = "task.created"
    TASK_STARTED = "task.started"
    TASK_WAITING = "task.waiting"
    TASK_QUEUED = "task.queued"
    TASK_RELEASED = "task.released"
    TASK_SUCCEEDED = "task.succeeded"
    TASK_FAILED = "task.failed"
    TASK_CANCEL_REQUESTED = "task.cancel_requested"
    TASK_CANCELLED = "task.cancelled"
    TASK_FORKED = "task.forked"
    SIGNAL_RECEIVED = "signal.received"
    STEP_SUCCEEDED = "step.succeeded"
    STEP_RETRYING = "step.retrying"
    STEP_FAILED = "step.failed"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_DECISION = "approval.decision"
    APPROVAL_DECIDED = "approval.decided"


@dataclass
class Event:
    """One append-only entry of the audit log: a transition or a step outcome."""

    id: int
    task_id: str
    tenant: str
    at: float
    type: str
    prior_status: str | None = None
    new_status: str | None = None
    attempt: int | None = None
    worker: str | None = None
    step: str | None = None
    error_class: str | None = None
    decision: str | None = None
    data: dict[str, Any] | None = None


OPTIONAL_COLUMNS = (
    "prior_status",
    "new_status",
    "attempt",
    "worker",
    "step",
    "error_class",
    "decision",
)
"""The columns of an event beyond its task, tenant, time and type; each kind fills some."""


@dataclass(frozen=True)
class EventKind:
    """What the catalogue says of one event type."""

    type: EventType
    when: str
    """When the store writes it (always in the transaction of the change it records)."""
    columns: tuple[str, ...]
    """The optional columns it may fill (`OPTIONAL_COLUMNS`); the others are null."""
    decision: str
    """What its `decision` column holds."""
    data: tuple[str, ...] = ()
    """The payload fields it may carry."""
    open_data: bool = False
    """Whether the payload may also carry fields of the step's own metadata."""


_RUN = ("prior_status", "new_status", "attempt", "worker")
_FINISHED = (*_RUN, "step", "error_class", "decision")
_STEP = ("attempt", "worker", "step", "error_class")
_STEP_DATA = ("seq", "kind", "attempts")
_ATTEMPT_DATA = ("message", "transient", "classified_by", "reason")
_OPENED = ("approval_id", "risk", "required", "status")

_KINDS = (
    EventKind(
        EventType.TASK_CREATED,
        "a task is submitted (any channel), or re-run from an ended one",
        ("new_status", "attempt", "decision"),
        "`submitted`, or `forked` for a re-run",
        ("workflow", "by", "forked_from"),
    ),
    EventKind(
        EventType.TASK_STARTED,
        "a worker takes the task: at submission (eager start), from the queue, when its "
        "wait is over, or when the lease of a worker that vanished expired",
        (*_RUN, "decision"),
        "`eager`, `claimed`, or `lease_expired` (a recovery)",
    ),
    EventKind(
        EventType.TASK_WAITING,
        "a run parks the task until a time, a signal or an approval; or a new task's "
        "concurrency key is at its limit (prior status `queued`, decision `concurrency`)",
        (*_RUN, "decision"),
        "the wait reason (`timer`, `signal`, `approval`, `child`, `retry_backoff`, "
        "`rate_limit`, `circuit_open`, `concurrency`, `budget`)",
        ("run_at", "concurrency_key"),
    ),
    EventKind(
        EventType.TASK_QUEUED,
        "a run would park the task but what it waits for is already there: it goes "
        "straight back to the queue; or a child of a waiting task ended, or a budget it "
        "waits for was decided on (prior status `waiting`): the task is queued to read "
        "its outcome; or a holder of its concurrency key ended and it is admitted; or a "
        "step gate lets a waiting task through (a step limit's slot was handed to it, "
        "its breaker closed)",
        (*_RUN, "decision"),
        "`signal_arrived`, `approval_decided`, `cancel_requested`, `child_ended`, "
        "`budget_raised`, `concurrency`, `slot_freed`, `circuit_closed` or `gate_woken` "
        "(a gate woke it while it was still running)",
        ("run_at",),
    ),
    EventKind(
        EventType.TASK_RELEASED,
        "a worker hands a running task back to the queue unfinished; or hands it to "
        "another queue, whose workers run its next step (`routed`)",
        (*_RUN, "decision"),
        "`worker_shutdown`, `unknown_workflow` (this worker does not have the task's "
        "workflow version; it claims that version no more), or `routed`",
        ("queue",),
    ),
    EventKind(
        EventType.TASK_SUCCEEDED,
        "the workflow returned, or an operator's compensation fork undid what it had to",
        _FINISHED,
        "`completed`, or `compensated` for a compensation fork",
    ),
    EventKind(
        EventType.TASK_FAILED,
        "the workflow raised, a step failed for good, a deadline or budget ran out, or "
        "a claim found the task's worker lost `max_lease_expiries` times in a row (the "
        "claiming worker fails it instead of running it again)",
        _FINISHED,
        "`retries_exhausted`, `step_failed_permanent`, `workflow_error`, "
        "`non_determinism`, `deadline_exceeded`, `budget_exceeded`, `invalid_input`, or "
        "`worker_lost` (error class `WorkerLost`; with `lease_expiries`, the expiries "
        "in a row, and `lost_worker`, the worker whose lease expired last); for a task "
        "whose compensations ran, its cause's, or `compensation_failed` (error class "
        "`CompensationFailed`) when one failed for good; `compensated` lists the steps "
        "undone",
        ("message", "lease_expiries", "lost_worker", "compensated"),
    ),
    EventKind(
        EventType.TASK_CANCEL_REQUESTED,
        "a cancellation is asked for while the task runs, with `compensate` (a run "
        "ends it, after undoing its completed steps: a task not running is queued), or "
        "while it compensates (its run ends it as its cause says)",
        ("prior_status", "new_status", "attempt", "decision"),
        "`cancel_requested`",
        ("by", "compensate"),
    ),
    EventKind(
        EventType.TASK_CANCELLED,
        "a task that was not running is cancelled, or a run ends on a cancellation (`by` "
        "is `parent:<id>` for a child cancelled because its parent ended)",
        _FINISHED,
        "`cancel_requested`; `compensated` lists the steps undone",
        ("by", "message", "compensated"),
    ),
    EventKind(
        EventType.TASK_FORKED,
        "an ended task is re-run as a new task (written on the original)",
        ("attempt", "decision"),
        "`rerun`",
        ("new_task", "from_seq", "by"),
    ),
    EventKind(
        EventType.SIGNAL_RECEIVED,
        "a signal is sent to the task (it wakes the task if the task waits for it)",
        ("prior_status", "new_status", "attempt", "decision"),
        "`signal:<name>`",
        ("signal_id", "name"),
    ),
    EventKind(
        EventType.STEP_SUCCEEDED,
        "a step's result is recorded",
        _STEP,
        "null",
        _STEP_DATA,
        open_data=True,
    ),
    EventKind(
        EventType.STEP_RETRYING,
        "a step attempt failed and will be tried again; the payload says what it raised "
        "(`message`), how it was classified (`transient`, `classified_by`) and when it is "
        "tried again (`retry_in` seconds, `reason` `backoff` or `retry_after`); the "
        "traceback is in the step record",
        (*_STEP, "decision"),
        "`retry` (a short backoff, waited in place) or `retry_backoff` (a long one: the "
        "task waits, its slot freed)",
        (*_STEP_DATA, *_ATTEMPT_DATA, "retry_in"),
        open_data=True,
    ),
    EventKind(
        EventType.STEP_FAILED,
        "a step failed for good (no retry left, or not worth retrying); the payload says "
        "what it raised, how it was classified and why it was not retried (`reason`: "
        "`permanent`, `attempts_exhausted`, `retry_budget_exhausted`, "
        "`elapsed_budget_exhausted`, `spend_budget_exhausted` or `budget_exceeded`); the "
        "traceback is in the step record",
        (*_STEP, "decision"),
        "`give_up`",
        (*_STEP_DATA, *_ATTEMPT_DATA),
        open_data=True,
    ),
    EventKind(
        EventType.APPROVAL_REQUESTED,
        "a run asks for a human decision (its risk policy required review), or a step "
        "whose spend budget is exhausted asks for the budget to be raised (`seq` below "
        "0; ADR 92)",
        ("attempt", "worker", "decision"),
        "`review_required`",
        _OPENED,
    ),
    EventKind(
        EventType.APPROVAL_DECISION,
        "one reviewer approves or rejects (an approval may need several)",
        ("attempt", "decision"),
        "`approve` or `reject`",
        ("approval_id", "reviewer", "reason", "changes"),
    ),
    EventKind(
        EventType.APPROVAL_DECIDED,
        "an approval closes: by its reviewers, by its timeout, or at once when the risk "
        "policy needed no review",
        ("prior_status", "new_status", "attempt", "worker", "decision"),
        "`<outcome>:<by>` (`approved` or `rejected`, by `reviewer` or `timeout`), or "
        "`auto` / `sampled` when the policy decided at once",
        ("approval_id", "reason", "changes", *_OPENED[1:]),
    ),
)

EVENT_CATALOGUE: Mapping[EventType, EventKind] = {k.type: k for k in _KINDS}
"""Every event type, with when it is written and what it carries."""
