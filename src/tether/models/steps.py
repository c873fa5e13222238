"""The step log: what a workflow recorded, and the signals it consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tether.models.tasks import TaskError


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
class SignalRecord:
    """A signal sent to a task, consumed by the workflow's `wait_for_signal` in id order."""

    id: int
    task_id: str
    name: str
    payload: Any
    created_at: float
    consumed_seq: int | None = None
