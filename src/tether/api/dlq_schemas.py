"""Request and response bodies of the dead-letter endpoints (`tether.api.dlq`). Times
are RFC 3339 in responses, as everywhere in the API (`tether.api.schemas.Time`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tether.api.schemas import ErrorOut, Time
from tether.models.dlq import (
    TREND_DAYS,
    TREND_HOURS,
    DlqAction,
    DlqActionType,
    DlqGroup,
    DlqGroupStatus,
    DlqMember,
    DlqMemberState,
)
from tether.services import dlq as service


class TrendOut(BaseModel):
    """Failures per recent bucket, oldest first, the current one last (UTC)."""

    hourly: list[int] = Field(description=f"The last {TREND_HOURS} hours")
    daily: list[int] = Field(description=f"The last {TREND_DAYS} days")


class GroupOut(BaseModel):
    """A dead-letter group: the tenant's failed tasks of one root cause."""

    fingerprint: str
    status: DlqGroupStatus = Field(
        description="open while it has open members; else how the last ones left"
    )
    failures: int = Field(description="Failures counted since it first appeared")
    open: int = Field(description="Failed tasks not retried, dismissed or purged yet")
    first_seen: Time
    last_seen: Time
    step: str | None = Field(description="The step they failed in (null: outside a step)")
    error_type: str
    workflows: list[str] = Field(description="The workflows they came from (the first 20)")
    example_task_id: str = Field(description="The latest failure")
    example_error: ErrorOut
    example_traceback: str | None = Field(
        default=None, description="Its failing step's traceback (on a single group's read)"
    )
    assignee: str | None = Field(description="Who it was escalated to")
    note: str | None = Field(description="The escalation's note")
    escalated_at: Time | None
    trend: TrendOut

    @classmethod
    def of(cls, g: DlqGroup) -> GroupOut:
        error = ErrorOut.of(g.example_error)
        assert error is not None
        trend = g.trend
        return cls(
            fingerprint=g.fingerprint,
            status=g.status,
            failures=g.failures,
            open=g.open,
            first_seen=g.first_seen,
            last_seen=g.last_seen,
            step=g.step,
            error_type=g.error_type,
            workflows=g.workflows,
            example_task_id=g.example_task_id,
            example_error=error,
            example_traceback=g.example_traceback,
            assignee=g.assignee,
            note=g.note,
            escalated_at=g.escalated_at,
            trend=TrendOut(
                hourly=list(trend.hourly) if trend else [0] * TREND_HOURS,
                daily=list(trend.daily) if trend else [0] * TREND_DAYS,
            ),
        )


class GroupList(BaseModel):
    """A page of groups, latest failure first."""

    items: list[GroupOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


class MemberOut(BaseModel):
    """One failed task of a group, and what became of it."""

    task_id: str
    workflow: str
    workflow_version: int
    failed_at: Time
    error: ErrorOut
    state: DlqMemberState
    retried_as: str | None = Field(description="The task a retry created")
    action_id: str | None = Field(description="The action that closed it")

    @classmethod
    def of(cls, m: DlqMember) -> MemberOut:
        error = ErrorOut.of(m.error)
        assert error is not None
        return cls(
            task_id=m.task_id,
            workflow=m.workflow,
            workflow_version=m.workflow_version,
            failed_at=m.failed_at,
            error=error,
            state=m.state,
            retried_as=m.retried_as,
            action_id=m.action_id,
        )


class MemberList(BaseModel):
    """A page of a group's tasks, newest failure first."""

    items: list[MemberOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


class GroupDetail(BaseModel):
    """A group and the first page of its tasks."""

    group: GroupOut
    tasks: MemberList


_TEXT = r"\S"
"""A reason, note or assignee holds something besides spaces."""
TaskIds = Field(
    default=None,
    min_length=1,
    max_length=service.MAX_TASKS,
    description="Only these tasks of the group (omitted: the whole group)",
)


class RetryIn(BaseModel):
    """Re-run open members from their failed step (finished steps are not run again)."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["retry"]
    task_ids: list[str] | None = TaskIds
    reason: str | None = Field(default=None, max_length=service.TEXT_LIMIT, description="Why")
    limit: int = Field(
        default=1000,
        ge=1,
        le=service.MAX_TASKS,
        description="A retry of the whole group re-runs at most this many, oldest first",
    )


class CompensateIn(BaseModel):
    """Undo open members' completed steps: a linked task each runs their compensations
    (docs/sagas.md); the members leave the queue."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["compensate"]
    task_ids: list[str] | None = TaskIds
    reason: str | None = Field(default=None, max_length=service.TEXT_LIMIT, description="Why")
    limit: int = Field(
        default=1000,
        ge=1,
        le=service.MAX_TASKS,
        description="Compensating the whole group forks at most this many, oldest first",
    )


class EscalateIn(BaseModel):
    """Assign the group to someone with a note, and notify (`dlq.escalated`)."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["escalate"]
    assignee: str = Field(min_length=1, max_length=200, pattern=_TEXT, description="Who")
    note: str | None = Field(default=None, max_length=service.TEXT_LIMIT)
    task_ids: list[str] | None = TaskIds


class DismissIn(BaseModel):
    """Take open members out of the queue, with a reason; nothing runs."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["dismiss"]
    reason: str = Field(min_length=1, max_length=service.TEXT_LIMIT, pattern=_TEXT)
    task_ids: list[str] | None = TaskIds


ActionIn = Annotated[
    RetryIn | CompensateIn | EscalateIn | DismissIn,
    Field(
        discriminator="action",
        description="An action on a group, or on some of its tasks: retry, compensate, "
        "escalate or dismiss",
    ),
]
"""The body of `POST /v1/dlq/{fingerprint}/actions`, by its `action`."""


class ActionOut(BaseModel):
    """An entry of the audit trail: who did what, why, when, to which tasks."""

    id: str
    fingerprint: str
    action: DlqActionType
    actor: str
    at: Time
    reason: str | None
    assignee: str | None
    task_ids: list[str] = Field(description="The tasks it changed (escalate: those it named)")
    created: list[str] = Field(description="A retry's new tasks, in the order of task_ids")
    requested: list[str] | None = Field(description="The task ids asked for (null: the group)")
    skipped: list[str] = Field(description="Asked for, but not open members of the group")

    @classmethod
    def of(cls, a: DlqAction) -> ActionOut:
        return cls(
            id=a.id,
            fingerprint=a.fingerprint,
            action=a.action,
            actor=a.actor,
            at=a.at,
            reason=a.reason,
            assignee=a.assignee,
            task_ids=a.task_ids,
            created=a.created,
            requested=a.requested,
            skipped=service.skipped(a),
        )


class ActionList(BaseModel):
    """A page of the audit trail, newest first."""

    items: list[ActionOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")
