"""Request and response bodies of the HTTP API (the OpenAPI components).

Times are RFC 3339 in UTC (`2024-06-10T06:13:20.250000Z`) in every response; where a
time is read (a submission's `deadline`, the `created_after` / `created_before` query
parameters) RFC 3339 with an offset is the format and epoch seconds are still accepted
(`tether.models.times`, ADR 65). In Python the models hold epoch seconds, like the
records they show.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from tether.failures import ATTEMPTS_KEPT, MESSAGE_CHARS, TRACEBACK_CHARS, TRACEBACK_FRAMES
from tether.models import (
    AttemptError,
    Budget,
    DaySpend,
    Event,
    SpendLine,
    StepRecord,
    Task,
    TaskError,
    TaskPhase,
    TaskStatus,
)
from tether.models.budgets import MAX_TOKENS, MAX_USD
from tether.models.times import EPOCH_TEXT, LATEST, format_time, parse_time
from tether.models.webhooks import WebhookSubscription

MAX_BATCH = 1000

TIME_EXAMPLE = "2024-06-10T06:13:20.250000Z"

Time = Annotated[
    float,
    BeforeValidator(parse_time),
    PlainSerializer(format_time, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": [TIME_EXAMPLE]}),
]
"""A time: epoch seconds in Python, RFC 3339 UTC in JSON (epoch seconds read too)."""

TimeIn = Annotated[
    float,
    BeforeValidator(parse_time),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time", "examples": [TIME_EXAMPLE]},
                # The older forms, still read (ADR 65): epoch seconds, as a number or text.
                {"type": "number", "minimum": 0, "exclusiveMaximum": LATEST},
                {"type": "string", "pattern": f"^{EPOCH_TEXT.pattern}$"},
            ]
        }
    ),
]
"""A time a request gives: RFC 3339 with an offset, or epoch seconds (1970 to 2999)."""


def _whole(value: object) -> object:
    # JSON Schema counts 2.0 as an integer (and Python's parser reads 1e3 as a float):
    # a whole float is that integer; anything else is left to the strict check.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WHOLE = BeforeValidator(_whole)
"""Marks an integer field of a request body, after its bounds (`Annotated[int,
Field(ge=1), WHOLE]`: before them, pydantic could not state them in the schema).
Request models are strict: `"5"` and `true` are not integers; `5.0` is."""

NAME = r"^[A-Za-z0-9_.:\-]{1,200}$"


class BudgetIn(BaseModel):
    """A limit on a task's spend, in dollars and/or tokens (docs/flow-control.md)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"usd": 0.5, "on_exhausted": "approve"}],
            # At least one limit, stated for the schema's readers (and schemathesis).
            "anyOf": [
                {"required": ["usd"], "properties": {"usd": {"type": "number"}}},
                {"required": ["tokens"], "properties": {"tokens": {"type": "integer"}}},
            ],
        },
    )

    usd: float | None = Field(
        default=None, ge=0, le=MAX_USD, description="Dollars the task may spend (null: no limit)"
    )
    tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS), WHOLE] | None = Field(
        default=None, description="Tokens the task's model calls may use (null: no limit)"
    )
    on_exhausted: Literal["approve", "fail"] = Field(
        default="approve",
        description="When a step finds it spent: `approve` (the task waits, reason `budget`, "
        "while an approval to raise it is requested) or `fail` (`BudgetExceeded`)",
    )

    @model_validator(mode="after")
    def _limits_something(self) -> BudgetIn:
        if self.usd is None and self.tokens is None:
            raise ValueError("a budget limits usd, tokens or both")
        return self

    def budget(self) -> Budget:
        return Budget(usd=self.usd, tokens=self.tokens, on_exhausted=self.on_exhausted)


class BudgetOut(BaseModel):
    """A task's limit on spend."""

    usd: float | None = None
    tokens: int | None = None
    on_exhausted: str = "approve"


class SpendOut(BaseModel):
    """What was spent against one budget line, what running steps hold reserved of it,
    and the limit in force (the configured one, or a raise an approval granted)."""

    usd: float = Field(description="Dollars spent")
    tokens: int = Field(description="Tokens spent")
    reserved_usd: float = Field(description="Dollars reserved by steps running now")
    reserved_tokens: int = Field(description="Tokens reserved by steps running now")
    limit_usd: float | None = Field(default=None, description="null: no limit in dollars")
    limit_tokens: int | None = Field(default=None, description="null: no limit in tokens")
    approval_id: str | None = Field(
        default=None, description="The latest approval asked to raise this limit"
    )

    @classmethod
    def of(cls, line: SpendLine) -> SpendOut:
        return cls.model_validate(line.to_json())


class DaySpendOut(BaseModel):
    """What the caller's tenant spent on one UTC day, in all and by workflow."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tenant": "acme",
                    "day": "2026-12-04",
                    "total": {
                        "usd": 1.25,
                        "tokens": 48000,
                        "reserved_usd": 0.05,
                        "reserved_tokens": 0,
                        "limit_usd": 50.0,
                        "limit_tokens": None,
                        "approval_id": None,
                    },
                    "workflows": {},
                }
            ]
        }
    )

    tenant: str
    day: str = Field(description="The UTC day, YYYY-MM-DD")
    total: SpendOut
    workflows: dict[str, SpendOut] = Field(description="Each workflow's share of the day")

    @classmethod
    def of(cls, day: DaySpend) -> DaySpendOut:
        return cls.model_validate(day.to_json())


class TaskSubmission(BaseModel):
    """A task to create."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
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
    priority: Annotated[int, Field(ge=-1000, le=1000), WHOLE] = Field(
        default=0, description="Higher runs first"
    )
    correlation_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="Your id (default: task id)"
    )
    deadline: TimeIn | None = Field(
        default=None,
        description="Absolute deadline, RFC 3339 with an offset (epoch seconds also accepted)",
    )
    callback_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="A signed webhook of the task's end (task.succeeded/failed/cancelled) "
        "goes here; the response's `callback.secret` verifies it (docs/webhooks.md)",
    )
    spend_budget: BudgetIn | None = Field(
        default=None,
        description="The task's limit on spend (default: its workflow's); part of what an "
        "Idempotency-Key covers",
    )


class BatchSubmission(BaseModel):
    """Up to 1,000 tasks, created all together or not at all."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"tasks": [{"workflow": "research", "input": {"topic": "tides"}}]}]
        },
    )

    tasks: list[TaskSubmission] = Field(min_length=1, max_length=MAX_BATCH)


class RerunRequest(BaseModel):
    """How to re-run an ended task (the body is optional)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"from_step": 2}]}
    )

    from_step: Annotated[int, Field(ge=1, le=2**31 - 1), WHOLE] | None = Field(
        default=None,
        description="Run this step (its sequence number, `seq`) and every later one again; "
        "omitted: reuse every step that succeeded",
    )


class CancelRequest(BaseModel):
    """How to cancel a task (the body is optional)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"compensate": True}]}
    )

    compensate: bool = Field(
        default=False,
        description="Undo the task's completed steps first (their compensations, latest "
        "first): the task ends `cancelled` after a run has done so",
    )


class ErrorOut(BaseModel):
    """Why a task or step failed."""

    type: str
    message: str
    fingerprint: str
    step: str | None = None
    permanent: bool = True
    compensated: list[str] | None = Field(
        default=None,
        description="For a task whose compensations ran: the steps undone, in that order",
    )

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
            compensated=err.compensated,
        )


class Progress(BaseModel):
    """How far a task got."""

    current_step: str | None = Field(default=None, description="Step running or last run")
    steps_done: int = Field(description="Steps finished so far")


class CallbackOut(BaseModel):
    """The webhook subscription of a task submitted with `callback_url`."""

    subscription_id: str
    url: str
    event_types: list[str]
    secret: str = Field(description="`whsec_...`: verify the callback's signature with it")


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
                    "created_at": "2024-06-10T06:13:20.000000Z",
                    "updated_at": "2024-06-10T06:13:24.200000Z",
                    "started_at": "2024-06-10T06:13:20.300000Z",
                    "finished_at": None,
                    "deadline": None,
                    "run_at": "2024-06-10T06:13:20.000000Z",
                    "cancel_requested": False,
                    "phase": "execution",
                    "forked_from": None,
                    "parent_id": None,
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
    created_at: Time
    updated_at: Time
    started_at: Time | None = None
    finished_at: Time | None = None
    deadline: Time | None = None
    run_at: Time | None = None
    cancel_requested: bool = False
    phase: TaskPhase = Field(
        default=TaskPhase.EXECUTION,
        description="`execution`, or `compensation` once its saga undoes its completed steps",
    )
    home_queue: str | None = Field(
        default=None,
        description="The queue it was submitted to, once a step that names another queue "
        "routed it (`queue` is where it is now)",
    )
    concurrency_key: str | None = Field(
        default=None,
        description="The concurrency key it counts against (`tenant/name`, `*/name` "
        "fleet-wide): while the key is at its limit it waits with reason `concurrency`",
    )
    forked_from: str | None = Field(default=None, description="The task this one re-runs")
    fork_from_seq: int | None = Field(
        default=None, description="The step it re-ran from (null: only unfinished steps)"
    )
    fork_root: str | None = Field(
        default=None,
        description="The first task of its chain of re-runs: steps run again present that "
        "task's idempotency keys",
    )
    parent_id: str | None = Field(
        default=None,
        description="For a child task (`ctx.child`, `ctx.start_child`): the task that started "
        "it; list a task's children with `GET /v1/tasks/{id}/children`",
    )
    spend_budget: BudgetOut | None = Field(
        default=None, description="The task's limit on spend (null: none of its own)"
    )
    spend: SpendOut | None = Field(
        default=None,
        description="`GET /v1/tasks/{id}` only: what the task spent and holds reserved",
    )

    callback: CallbackOut | None = Field(
        default=None,
        description="Submit responses only, when `callback_url` was given: its webhook "
        "subscription and signing secret",
    )

    @classmethod
    def of(cls, t: Task, callback: WebhookSubscription | None = None) -> TaskOut:
        out = cls.model_validate(t.to_dict())
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


class AttemptErrorOut(BaseModel):
    """One failed attempt of a step: what it raised, when, how it was classified and
    what was decided (the texts are bounded: see `tether.failures`)."""

    attempt: int = Field(description="The step's attempt number, from 1")
    type: str = Field(description="The exception's class name")
    message: str = Field(description=f"Its message (the first {MESSAGE_CHARS:,} characters)")
    traceback: str | None = Field(
        default=None,
        description=f"Its traceback: the last {TRACEBACK_FRAMES} frames of each exception "
        f"in the chain, then the last {TRACEBACK_CHARS:,} characters",
    )
    started_at: Time | None = Field(default=None, description="When the attempt started")
    finished_at: Time | None = Field(default=None, description="When it failed")
    transient: bool = Field(description="Classified transient (worth a retry) or permanent")
    classified_by: str = Field(
        description="The rule that classified it: `Transient`, `Permanent`, "
        "`classifier <name>`, `RetryPolicy.non_retryable`, `HTTP <status>`, "
        "`network or timeout error`, `known transient type <name>`, `BudgetExceeded` "
        "(a spend budget refused the attempt) or `default`"
    )
    decision: str = Field(description="`retry`, `retry_backoff` (a durable wait) or `give_up`")
    reason: str = Field(
        description="`backoff` or `retry_after` (a retry's delay); `permanent`, "
        "`attempts_exhausted`, `retry_budget_exhausted`, `elapsed_budget_exhausted`, "
        "`spend_budget_exhausted` or `budget_exceeded`"
    )
    retry_in: float | None = Field(
        default=None, description="Seconds from the failure to the next attempt"
    )

    @classmethod
    def of(cls, a: AttemptError) -> AttemptErrorOut:
        return cls.model_validate(a.to_json())


class StepOut(BaseModel):
    """One entry of a task's step log."""

    seq: int
    name: str
    kind: str
    status: str
    attempts: int
    result: Any = None
    error: ErrorOut | None = None
    started_at: Time | None = None
    finished_at: Time | None = None
    wake_at: Time | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    attempt_errors: list[AttemptErrorOut] = Field(
        default_factory=list,
        description="Each failed attempt, oldest first (the first and the latest, "
        f"{ATTEMPTS_KEPT} in all); empty when no attempt failed",
    )

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
            attempt_errors=[AttemptErrorOut.of(a) for a in s.attempt_errors],
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
                    "at": "2024-06-10T06:13:24.200000Z",
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
    at: Time
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
    created_at: Time


class Health(BaseModel):
    """Liveness or readiness."""

    status: str = Field(examples=["ok"])
    detail: str | None = None
