"""The step log: what a workflow recorded, each failed attempt of a step, and the
signals it consumes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tether.models.tasks import TaskError

INTEGRATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""What a circuit breaker or step limit may be named (the `integration` of the steps
they govern): letters, digits, `.`, `_` and `-`, up to 100, so that it fits in a URL
path segment and a metric label as it is."""


def check_integration(name: object, where: str = "integration") -> str:
    """`name` when it is a valid integration name (`INTEGRATION_NAME`); else
    `ValueError` saying why."""
    if not isinstance(name, str) or INTEGRATION_NAME.fullmatch(name) is None:
        raise ValueError(
            f"{where}: {name!r} is not an integration name (letters, digits, '.', '_' "
            "and '-', up to 100, starting with a letter or digit)"
        )
    return name


class StepKind(StrEnum):
    """What produced an entry of the step log."""

    STEP = "step"
    NOW = "now"
    UUID = "uuid"
    RANDOM = "random"
    SLEEP = "sleep"
    SIGNAL = "signal"
    APPROVAL = "approval"
    COMPENSATING = "compensating"
    """The run entered its compensating phase; the record's result is why (ADR 83)."""
    COMPENSATION = "compensation"
    """A compensation that ran to undo an earlier step (its `meta` names which)."""
    CHILD = "child"


class StepStatus(StrEnum):
    """Outcome of a step-log entry. `pending` marks a wait or a retry in backoff."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RetryDecision(StrEnum):
    """What Tether did after a failed attempt of a step."""

    RETRY = "retry"
    """Tried again after a short backoff, waited in place (the slot stays taken)."""
    RETRY_BACKOFF = "retry_backoff"
    """Tried again after a long backoff, waited as a durable `retry_backoff` wait (the
    task is suspended and its slot freed)."""
    GIVE_UP = "give_up"
    """Not tried again: the step failed for good."""


@dataclass(frozen=True)
class AttemptError:
    """One failed attempt of a step: what it raised, when, how Tether classified the
    failure and what it decided. Built by `tether.failures.attempt_error` only (the one
    place that turns an exception into stored text)."""

    attempt: int
    """The step's attempt number, from 1."""
    type: str
    """The exception's class name."""
    message: str
    """`str(exc)`, capped (`tether.failures.MESSAGE_CHARS`)."""
    traceback: str | None
    """The formatted traceback from the first frame of the step's own code, bounded (its
    last `tether.failures.TRACEBACK_FRAMES` frames per exception, lines capped, its last
    `TRACEBACK_CHARS` characters; what was cut is said in the text); None when the
    exception was never raised."""
    started_at: float | None
    """When the attempt started (epoch seconds)."""
    finished_at: float | None
    """When it failed."""
    transient: bool
    """The classification: True when running the step again may succeed."""
    classified_by: str
    """The rule that classified it: `Transient`, `Permanent`, `classifier <name>`,
    `RetryPolicy.non_retryable`, `HTTP <status>`, `network or timeout error`,
    `known transient type <name>`, or `default` (unrecognised: permanent)."""
    decision: RetryDecision
    """Retried in place, retried after a durable wait, or given up."""
    reason: str
    """Why: `backoff` or `retry_after` (a retry's delay came from the policy's backoff
    or from `Transient(retry_after=)`); `permanent`, `attempts_exhausted`,
    `retry_budget_exhausted`, `elapsed_budget_exhausted`, `spend_budget_exhausted`
    (`RetryBudget.max_usd`) or `budget_exceeded` (a spend budget refused the attempt)
    (why it gave up)."""
    retry_in: float | None = None
    """Seconds from the failure to the next attempt; None when it gave up."""

    def to_json(self) -> dict[str, Any]:
        """The attempt as stored and as the API shows it."""
        return {
            "attempt": self.attempt,
            "type": self.type,
            "message": self.message,
            "traceback": self.traceback,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "transient": self.transient,
            "classified_by": self.classified_by,
            "decision": str(self.decision),
            "reason": self.reason,
            "retry_in": self.retry_in,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttemptError:
        """The inverse of `to_json`."""
        return cls(
            attempt=data["attempt"],
            type=data["type"],
            message=data["message"],
            traceback=data.get("traceback"),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            transient=bool(data.get("transient", False)),
            classified_by=data.get("classified_by", ""),
            decision=RetryDecision(data.get("decision", RetryDecision.GIVE_UP)),
            reason=data.get("reason", ""),
            retry_in=data.get("retry_in"),
        )


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
    attempt_errors: tuple[AttemptError, ...] = ()
    """Each failed attempt of the step, oldest first (bounded: the first and the latest,
    `tether.failures.ATTEMPTS_KEPT` in all). Empty for a step that never failed, and
    for rows written before Tether kept them."""


@dataclass
class SignalRecord:
    """A signal sent to a task, consumed by the workflow's `wait_for_signal` in id order."""

    id: int
    task_id: str
    name: str
    payload: Any
    created_at: float
    consumed_seq: int | None = None
