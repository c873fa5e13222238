"""The records users see: tasks, steps, events, approvals. Plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class TaskStatus(StrEnum):
    """Where a task is in its life. Terminal states never change again."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})


class WaitReason(StrEnum):
    """Why a task in `waiting` waits."""

    APPROVAL = "approval"
    SIGNAL = "signal"
    TIMER = "timer"
    RETRY_BACKOFF = "retry_backoff"
    RATE_LIMIT = "rate_limit"


class StepKind(StrEnum):
    """What produced an entry of the step log."""

    STEP = "step"
    NOW = "now"
    UUID = "uuid"
    RANDOM = "random"
    SLEEP = "sleep"
    SIGNAL = "signal"
    APPROVAL = "approval"


class StepStatus(StrEnum):
    """Outcome of a step-log entry. `pending` marks a wait or a retry in backoff."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class TaskError:
    """Why a task or step failed."""

    type: str
    message: str
    fingerprint: str
    step: str | None = None
    permanent: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "message": self.message,
            "fingerprint": self.fingerprint,
            "step": self.step,
            "permanent": self.permanent,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> TaskError | None:
        if not data:
            return None
        return cls(
            type=data["type"],
            message=data["message"],
            fingerprint=data["fingerprint"],
            step=data.get("step"),
            permanent=data.get("permanent", True),
        )


@dataclass
class Task:
    """One run of one workflow with one input."""

    id: str
    tenant: str
    workflow: str
    workflow_version: int
    queue: str
    priority: int
    status: TaskStatus
    input: Any
    created_at: float
    updated_at: float
    wait_reason: WaitReason | None = None
    result: Any = None
    error: TaskError | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None
    created_by: str | None = None
    attempt: int = 0
    run_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    deadline: float | None = None
    forked_from: str | None = None
    fork_from_seq: int | None = None
    steps_done: int = 0
    current_step: str | None = None
    cancel_requested: bool = False


@dataclass
class StepRecord:
    """One entry of a task's step log."""

    task_id: str
    seq: int
    name: str
    kind: StepKind
    status: StepStatus
    attempts: int = 1
    result: Any = None
    error: TaskError | None = None
    started_at: float | None = None
    finished_at: float | None = None
    wake_at: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


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
