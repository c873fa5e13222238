"""Request and response bodies of the HTTP API (the OpenAPI components).

Times in responses are seconds since the Unix epoch (floats), as everywhere in Tether.
A submission's `deadline` accepts epoch seconds or an RFC 3339 time with an offset.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tether.api.webhook_schemas import CallbackOut
from tether.models import Event, StepRecord, Task, TaskError, TaskStatus
from tether.models.webhooks import WebhookSubscription

MAX_BATCH = 1000


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("a deadline needs a UTC offset (e.g. 2030-01-01T00:00:00Z)")
    try:
        seconds = value.timestamp()
    except (OverflowError, OSError, ValueError):
        raise ValueError("deadline out of range") from None
    if not math.isfinite(seconds) or not 0 <= seconds < 32503680000:  # year 3000
        raise ValueError("deadline out of range")
    return seconds


# pydantic reads a datetime from RFC 3339 text or from epoch seconds (a number).
Deadline = Annotated[datetime | None, AfterValidator(_epoch)]

NAME = r"^[A-Za-z0-9_.:\-]{1,200}$"


class TaskSubmission(BaseModel):
    """A task to create."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "workflow": "research",
                    "input": {"topic": "tides"},
                    "priority": 0,
                    "correlation_id": "order-1234",
                }
            ]
        },
    )

    workflow: str = Field(min_length=1, max_length=200, description="Registered workflow name")
    input: Any = Field(default=None, description="The workflow's input (any JSON)")
    queue: str | None = Field(default=None, pattern=NAME, description="Override the queue")
    priority: int = Field(default=0, ge=-1000, le=1000, description="Higher runs first")
    correlation_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="Your id (default: task id)"
    )
    deadline: Deadline = Field(
        default=None,
        description="Absolute deadline, RFC 3339 with an offset (epoch seconds also accepted)",
        examples=["2030-01-01T00:00:00Z"],
    )
    callback_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="A signed webhook of the task's end (task.succeeded/failed/cancelled) "
        "goes here; the response's `callback.secret` verifies it (docs/webhooks.md)",
    )


class BatchSubmission(BaseModel):
    """Up to 1,000 tasks, created all together or not at all."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"tasks": [{"workflow": "research", "input": {"topic": "tides"}}]}]
        },
    )

    tasks: list[TaskSubmission] = Field(min_length=1, max_length=MAX_BATCH)


class ErrorOut(BaseModel):
    """Why a task or step failed."""

    type: str
    message: str
    fingerprint: str
    step: str | None = None
    permanent: bool = True

    @classmethod
    def of(cls, err: TaskError | None) -> ErrorOut | None:
        if err is None:
            return None
        return cls(
            type=err.type,
            message=err.message,
            fingerprint=err.fingerprint,
            step=err.step,
            permanent=err.permanent,
        )


class Progress(BaseModel):
    """How far a task got."""

    current_step: str | None = Field(default=None, description="Step running or last run")
    steps_done: int = Field(description="Steps finished so far")


class TaskOut(BaseModel):
    """A task as the API shows it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0190f3c2-6b1e-7cc1-9d2a-1f2e3d4c5b6a",
                    "workflow": "research",
                    "workflow_version": 1,
                    "tenant": "acme",
                    "status": "running",
                    "wait_reason": None,
                    "input": {"topic": "tides"},
                    "result": None,
                    "error": None,
                    "progress": {"current_step": "summarize", "steps_done": 3},
                    "queue": "default",
                    "priority": 0,
                    "attempt": 1,
                    "idempotency_key": "req-1",
                    "correlation_id": "order-1234",
                    "created_by": "app-backend",
                    "created_at": 1718000000.0,
                    "updated_at": 1718000004.2,
                    "started_at": 1718000000.3,
                    "finished_at": None,
                    "deadline": None,
                    "run_at": 1718000000.0,
                    "cancel_requested": False,
                    "forked_from": None,
                }
            ]
        }
    )

    id: str
    workflow: str
    workflow_version: int
    tenant: str
    status: TaskStatus
    wait_reason: str | None = None
    input: Any = None
    result: Any = None
    error: ErrorOut | None = None
    progress: Progress
    queue: str
    priority: int
    attempt: int
    idempotency_key: str | None = None
    correlation_id: str | None = None
    created_by: str | None = None
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    deadline: float | None = None
    run_at: float | None = None
    cancel_requested: bool = False
    forked_from: str | None = None
    fork_from_seq: int | None = None
    callback: CallbackOut | None = Field(
        default=None,
        description="Submit responses only, when `callback_url` was given: its webhook "
        "subscription and signing secret",
    )

    @classmethod
    def of(cls, t: Task, callback: WebhookSubscription | None = None) -> TaskOut:
        out = cls.model_validate(t.to_json())
        if callback is not None:
            out.callback = CallbackOut(
                subscription_id=callback.id,
                url=callback.url,
                event_types=callback.event_types,
                secret=callback.secret,
            )
        return out


class TaskList(BaseModel):
    """A page of tasks, newest first."""

    items: list[TaskOut]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last"
    )


class BatchOut(BaseModel):
    """The tasks of a batch, in submission order."""

    items: list[TaskOut]


class StepOut(BaseModel):
    """One entry of a task's step log."""

    seq: int
    name: str
    kind: str
    status: str
    attempts: int
    result: Any = None
    error: ErrorOut | None = None
    started_at: float | None = None
    finished_at: float | None = None
    wake_at: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, s: StepRecord) -> StepOut:
        return cls(
            seq=s.seq,
            name=s.name,
            kind=str(s.kind),
            status=str(s.status),
            attempts=s.attempts,
            result=s.result,
            error=ErrorOut.of(s.error),
            started_at=s.started_at,
            finished_at=s.finished_at,
            wake_at=s.wake_at,
            meta=s.meta,
        )


class StepList(BaseModel):
    """A task's step log, in sequence order."""

    items: list[StepOut]


class EventOut(BaseModel):
    """One entry of the audit log. `id` increases; use it as `after` / `Last-Event-ID`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "task_id": "0190f3c2-6b1e-7cc1-9d2a-1f2e3d4c5b6a",
                    "tenant": "acme",
                    "at": 1718000004.2,
                    "type": "step.succeeded",
                    "prior_status": None,
                    "new_status": None,
                    "attempt": 1,
                    "step": "summarize",
                    "error_class": None,
                    "decision": None,
                    "data": None,
                }
            ]
        }
    )

    id: int
    task_id: str
    tenant: str
    at: float
    type: str
    prior_status: str | None = None
    new_status: str | None = None
    attempt: int | None = None
    step: str | None = None
    error_class: str | None = None
    decision: str | None = None
    data: Any = None

    @classmethod
    def of(cls, e: Event) -> EventOut:
        return cls(
            id=e.id,
            task_id=e.task_id,
            tenant=e.tenant,
            at=e.at,
            type=e.type,
            prior_status=e.prior_status,
            new_status=e.new_status,
            attempt=e.attempt,
            step=e.step,
            error_class=e.error_class,
            decision=e.decision,
            data=e.data,
        )


class EventList(BaseModel):
    """Events oldest first."""

    items: list[EventOut]
    next_after: int = Field(description="Pass as `after` to continue from here")


class SignalOut(BaseModel):
    """A signal stored for a task."""

    id: int
    task_id: str
    name: str
    created_at: float


class Health(BaseModel):
    """Liveness or readiness."""

    status: str = Field(examples=["ok"])
    detail: str | None = None
