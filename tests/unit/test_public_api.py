"""The public surface is pinned: a name added to or dropped from `tether.__all__` must be
a decision (and a CHANGELOG line), not an accident."""

from __future__ import annotations

import tether

PUBLIC = {
    "AgentLimitExceeded",
    "AgentLimits",
    "ModelCallError",
    "ModelPrice",
    "ModelUsage",
    "PriceTable",
    "SlackChannel",
    "NotificationRecord",
    "Notification",
    "HookReceipt",
    "HookDef",
    "EmailChannel",
    "EVENT_CATALOGUE",
    "Approval",
    "ApprovalClosed",
    "ApprovalFilter",
    "AttemptError",
    "BudgetExceeded",
    "ChildFailed",
    "ChildHandle",
    "ChildOptions",
    "Client",
    "Clock",
    "ConfigError",
    "Context",
    "DeadlineExceeded",
    "Decision",
    "EgressRefused",
    "Event",
    "EventKind",
    "EventType",
    "IdempotencyConflict",
    "InputValidationError",
    "InvalidTransition",
    "InvalidWebhook",
    "NonDeterminismError",
    "NotStorable",
    "Permanent",
    "PolicyBook",
    "Requirement",
    "RetryBudget",
    "RetryDecision",
    "RetryPolicy",
    "RiskPolicy",
    "SchemaOutOfDate",
    "Settings",
    "SignalRecord",
    "StepFailed",
    "StepInfo",
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
    "Schedule",
    "MissedTicks",
    "InvalidSchedule",
    "ScheduleExists",
    "ScheduleNotFound",
    "Worker",
    "__version__",
    "current_step",
    "load_settings",
}


def test_all_is_pinned() -> None:
    assert set(tether.__all__) == PUBLIC
    assert len(tether.__all__) == len(PUBLIC), "a name is listed twice in __all__"


def test_every_public_name_resolves_and_is_documented() -> None:
    for name in tether.__all__:
        value = getattr(tether, name)
        if callable(value) and name != "__version__":
            assert value.__doc__, f"tether.{name} has no docstring"
