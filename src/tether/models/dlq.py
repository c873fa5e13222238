"""The dead-letter queue, as plain records (docs/dlq.md, ADR 79).

Failed tasks are grouped by their error fingerprint (`tether.errors.fingerprint`: the
error type, the step, and the message with numbers and ids masked), per tenant. A
group counts its failures and its *open* members: failed tasks nobody has retried or
dismissed yet. Actions on a group (or on some of its tasks) take members out of the
open set, and each action is kept in the group's audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from tether.models.tasks import TaskError


class DlqActionType(StrEnum):
    """What an operator (or retention) did to a dead-letter group."""

    RETRY = "retry"
    """Re-run the tasks as new linked tasks from their failed step (a fork: finished
    steps are not run again); the originals leave the open members."""
    COMPENSATE = "compensate"
    """Undo the tasks' completed steps: a linked task each, in phase `compensation`,
    runs the compensations they have not run (docs/sagas.md); the originals leave the
    open members."""
    ESCALATE = "escalate"
    """Assign the group to someone with a note, and notify (trigger `dlq.escalated`);
    the members stay open."""
    DISMISS = "dismiss"
    """Take the tasks out of the open members, with a reason; nothing runs."""
    EXPIRE = "expire"
    """Written by retention: open members purged with their tasks (`retention_days`)."""


OPERATOR_ACTIONS = (
    DlqActionType.RETRY,
    DlqActionType.COMPENSATE,
    DlqActionType.ESCALATE,
    DlqActionType.DISMISS,
)
"""The actions the API, the CLI and `app.dlq` take (`expire` is retention's own)."""


class DlqGroupStatus(StrEnum):
    """Whether a group has open members, and if not, how the last ones left. A new
    failure of its fingerprint makes it `open` again."""

    OPEN = "open"
    RETRIED = "retried"
    COMPENSATED = "compensated"
    DISMISSED = "dismissed"
    EXPIRED = "expired"


class DlqMemberState(StrEnum):
    """Where a failed task of a group stands."""

    OPEN = "open"
    RETRIED = "retried"
    COMPENSATED = "compensated"
    DISMISSED = "dismissed"


TREND_HOURS = 24
"""Hourly buckets in a group's trend (the last 24 hours, the current one last)."""
TREND_DAYS = 7
"""Daily buckets in a group's trend (the last 7 days, today last)."""


@dataclass(frozen=True)
class DlqTrend:
    """Failures per recent hour and per recent day, oldest first, the current bucket
    last (buckets are UTC hours and days)."""

    hourly: tuple[int, ...]
    daily: tuple[int, ...]


@dataclass
class DlqGroup:
    """The failed tasks of one tenant that share an error fingerprint."""

    tenant: str
    fingerprint: str
    status: DlqGroupStatus
    failures: int
    """Every failure counted into the group since it first appeared."""
    open: int
    """Members not retried, dismissed or purged yet."""
    first_seen: float
    last_seen: float
    step: str | None
    """The step the failures happened in (part of the fingerprint; None: outside a step)."""
    error_type: str
    workflows: list[str]
    """The workflows the failures came from (the first 20 seen)."""
    example_task_id: str
    example_error: TaskError
    """The error of the latest failure (`example_task_id`)."""
    assignee: str | None = None
    note: str | None = None
    escalated_at: float | None = None
    updated_at: float = 0.0
    trend: DlqTrend | None = None
    example_traceback: str | None = None
    """The traceback of the example's failing step, when a single group is read and the
    example task still exists."""


@dataclass
class DlqMember:
    """One failed task of a group, and what became of it."""

    task_id: str
    workflow: str
    workflow_version: int
    failed_at: float
    error: TaskError
    state: DlqMemberState
    retried_as: str | None = None
    """The task a retry created (a retried member)."""
    action_id: str | None = None
    """The action that closed it (None for open ones, and for a re-run made outside
    the dead-letter queue: `app.rerun`, `POST /v1/tasks/{id}/rerun`)."""


@dataclass
class DlqAction:
    """One entry of a group's audit trail: who did what, why, when, to which tasks."""

    id: str
    tenant: str
    fingerprint: str
    action: DlqActionType
    actor: str
    at: float
    reason: str | None = None
    """Why (a dismissal's reason, a retry's or an escalation's note)."""
    assignee: str | None = None
    """Who an escalation assigned the group to."""
    task_ids: list[str] = field(default_factory=list)
    """The tasks the action changed (for an escalation: the tasks it named, if any)."""
    created: list[str] = field(default_factory=list)
    """For a retry: the new tasks, in the order of `task_ids`."""
    requested: list[str] | None = None
    """The task ids the caller named (None: the whole group)."""
    idempotency_key: str | None = None


@dataclass(frozen=True)
class DlqRequest:
    """An action asked for: on the whole group (`task_ids` None) or on chosen tasks."""

    action: DlqActionType
    actor: str
    task_ids: tuple[str, ...] | None = None
    reason: str | None = None
    assignee: str | None = None
    idempotency_key: str | None = None
    limit: int = 1000
    """A retry of the whole group retries at most this many open members, oldest first."""
