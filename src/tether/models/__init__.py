"""The records users see: tasks, steps, signals, events, approvals, API keys,
notifications and inbound-webhook receipts. Plain data, no I/O; one module per kind of
record, all re-exported here."""

from tether.models.api_keys import ApiKey
from tether.models.approvals import Approval, ApprovalFilter
from tether.models.budgets import Budget, Cost, DaySpend, SpendLine
from tether.models.events import EVENT_CATALOGUE, Event, EventKind, EventType
from tether.models.notifications import HookReceipt, Notification, NotificationRecord
from tether.models.steps import (
    AttemptError,
    RetryDecision,
    SignalRecord,
    StepKind,
    StepRecord,
    StepStatus,
)
from tether.models.tasks import (
    TASK_FIELDS,
    TERMINAL,
    Task,
    TaskError,
    TaskFilter,
    TaskPhase,
    TaskStatus,
    WaitReason,
)

__all__ = [
    "EVENT_CATALOGUE",
    "TASK_FIELDS",
    "TERMINAL",
    "ApiKey",
    "Approval",
    "ApprovalFilter",
    "AttemptError",
    "Budget",
    "Cost",
    "DaySpend",
    "Event",
    "EventKind",
    "EventType",
    "HookReceipt",
    "Notification",
    "NotificationRecord",
    "RetryDecision",
    "SignalRecord",
    "SpendLine",
    "StepKind",
    "StepRecord",
    "StepStatus",
    "Task",
    "TaskError",
    "TaskFilter",
    "TaskPhase",
    "TaskStatus",
    "WaitReason",
]
