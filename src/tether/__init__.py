"""Tether: a durable runtime for long-running AI-agent work.

    from tether import Tether, Context, RetryPolicy, Transient, Permanent

Workflows are `async def` functions of a `Context`; each `ctx.step(...)` (or call of an
`@app.step` function) is checkpointed, so a task resumes after any crash without redoing
finished steps. See the README for the concepts and DESIGN for the guarantees.
"""

from tether.agents import (
    AgentLimitExceeded,
    AgentLimits,
    ModelCallError,
    ModelPrice,
    ModelUsage,
    PriceTable,
)
from tether.app import TaskHandle, Tether
from tether.client import Client
from tether.clock import Clock, SystemClock
from tether.config import Settings, load_settings
from tether.dlq import DeadLetters
from tether.egress import EgressRefused
from tether.engine.approvals import PolicyBook, Requirement, RiskPolicy
from tether.engine.children import ChildHandle, ChildOptions
from tether.engine.context import Context, Decision, StepInfo, current_step
from tether.engine.registry import Concurrency, Fairness
from tether.engine.worker import Worker
from tether.errors import (
    ApprovalClosed,
    BreakerConflict,
    BreakerNotFound,
    BudgetExceeded,
    ChildFailed,
    ConfigError,
    DeadlineExceeded,
    DlqGroupNotFound,
    DlqKeyConflict,
    IdempotencyConflict,
    InputValidationError,
    InvalidDlqAction,
    InvalidSchedule,
    InvalidTransition,
    InvalidWebhook,
    NonDeterminismError,
    NotStorable,
    Permanent,
    ScheduleExists,
    ScheduleNotFound,
    SchemaOutOfDate,
    StepFailed,
    StoreUnavailable,
    SyncStepStuck,
    TaskCancelledError,
    TaskFailedError,
    TaskNotFound,
    TetherError,
    Transient,
    UnknownStep,
    UnknownWorkflow,
    UnserializableResult,
)
from tether.flow import RateLimit
from tether.inbound import HookDef
from tether.models import (
    EVENT_CATALOGUE,
    Approval,
    ApprovalFilter,
    AttemptError,
    Event,
    EventKind,
    EventType,
    HookReceipt,
    Notification,
    NotificationRecord,
    RetryDecision,
    SignalRecord,
    StepRecord,
    Task,
    TaskError,
    TaskFilter,
    TaskPhase,
    TaskStatus,
    WaitReason,
)
from tether.models.breakers import Breaker, BreakerPolicy, BreakerState, BreakerView
from tether.models.dlq import (
    DlqAction,
    DlqActionType,
    DlqGroup,
    DlqGroupStatus,
    DlqMember,
    DlqMemberState,
    DlqTrend,
)
from tether.models.schedules import MissedTicks, Schedule
from tether.models.step_limits import StepLimit, StepLimitUsage
from tether.models.webhooks import WebhookDelivery, WebhookSubscription
from tether.notify import EmailChannel, SlackChannel
from tether.retry import RetryBudget, RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "EVENT_CATALOGUE",
    "AgentLimitExceeded",
    "AgentLimits",
    "Approval",
    "ApprovalClosed",
    "ApprovalFilter",
    "AttemptError",
    "Breaker",
    "BreakerConflict",
    "BreakerNotFound",
    "BreakerPolicy",
    "BreakerState",
    "BreakerView",
    "BudgetExceeded",
    "ChildFailed",
    "ChildHandle",
    "ChildOptions",
    "Client",
    "Clock",
    "Concurrency",
    "ConfigError",
    "Context",
    "DeadLetters",
    "DeadlineExceeded",
    "Decision",
    "DlqAction",
    "DlqActionType",
    "DlqGroup",
    "DlqGroupNotFound",
    "DlqGroupStatus",
    "DlqKeyConflict",
    "DlqMember",
    "DlqMemberState",
    "DlqTrend",
    "EgressRefused",
    "EmailChannel",
    "Event",
    "EventKind",
    "EventType",
    "Fairness",
    "HookDef",
    "HookReceipt",
    "IdempotencyConflict",
    "InputValidationError",
    "InvalidDlqAction",
    "InvalidSchedule",
    "InvalidTransition",
    "InvalidWebhook",
    "MissedTicks",
    "ModelCallError",
    "ModelPrice",
    "ModelUsage",
    "NonDeterminismError",
    "NotStorable",
    "Notification",
    "NotificationRecord",
    "Permanent",
    "PolicyBook",
    "PriceTable",
    "RateLimit",
    "Requirement",
    "RetryBudget",
    "RetryDecision",
    "RetryPolicy",
    "RiskPolicy",
    "Schedule",
    "ScheduleExists",
    "ScheduleNotFound",
    "SchemaOutOfDate",
    "Settings",
    "SignalRecord",
    "SlackChannel",
    "StepFailed",
    "StepInfo",
    "StepLimit",
    "StepLimitUsage",
    "StepRecord",
    "StoreUnavailable",
    "SyncStepStuck",
    "SystemClock",
    "Task",
    "TaskCancelledError",
    "TaskError",
    "TaskFailedError",
    "TaskFilter",
    "TaskHandle",
    "TaskNotFound",
    "TaskPhase",
    "TaskStatus",
    "Tether",
    "TetherError",
    "Transient",
    "UnknownStep",
    "UnknownWorkflow",
    "UnserializableResult",
    "WaitReason",
    "WebhookDelivery",
    "WebhookSubscription",
    "Worker",
    "__version__",
    "current_step",
    "load_settings",
]
