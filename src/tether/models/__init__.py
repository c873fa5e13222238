"""The records users see: tasks, steps, signals, events, approvals, API keys. Plain
data, no I/O; one module per kind of record, all re-exported here."""

from tether.models.api_keys import ApiKey
from tether.models.approvals import Approval, ApprovalFilter
from tether.models.events import Event
from tether.models.steps import SignalRecord, StepKind, StepRecord, StepStatus
from tether.models.tasks import (
    TASK_FIELDS,
    TERMINAL,
    Task,
    TaskError,
    TaskFilter,
    TaskStatus,
    WaitReason,
)

__all__ = [
    "TASK_FIELDS",
    "TERMINAL",
    "ApiKey",
    "Approval",
    "ApprovalFilter",
    "Event",
    "SignalRecord",
    "StepKind",
    "StepRecord",
    "StepStatus",
    "Task",
    "TaskError",
    "TaskFilter",
    "TaskStatus",
    "WaitReason",
]
