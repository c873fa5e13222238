"""Tasks: their states, why they wait, how they failed, and how to list them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from tether.models.budgets import Budget
from tether.models.times import format_time, parse_time


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
    CHILD = "child"
    CONCURRENCY = "concurrency"
    """A concurrency limit is full: a task's key (ADR 89) or a step's integration (ADR
    91); it goes on when a holder ends."""
    CIRCUIT_OPEN = "circuit_open"
    """A step's integration has its circuit breaker open (docs/flow-control.md)."""
    BUDGET = "budget"
    """A step's spend budget is exhausted; an approval to raise it was requested."""


class TaskPhase(StrEnum):
    """Which part of its life a task is in (or ended in)."""

    EXECUTION = "execution"
    """Running its workflow (every task begins here)."""
    COMPENSATION = "compensation"
    """Undoing its completed steps, latest first: a saga's compensations (ADR 83)."""


@dataclass
class TaskError:
    """Why a task or step failed."""

    type: str
    message: str
    fingerprint: str
    step: str | None = None
    permanent: bool = True
    compensated: list[str] | None = None
    """For a task whose compensations ran: the steps they undid, in the order undone."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": self.type,
            "message": self.message,
            "fingerprint": self.fingerprint,
            "step": self.step,
            "permanent": self.permanent,
        }
        if self.compensated is not None:
            data["compensated"] = self.compensated
        return data

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
            compensated=data.get("compensated"),
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
    fork_root: str | None = None
    """For a re-run: the first task of its chain of re-runs, whose idempotency keys the
    steps it executes again present (None for a task that is not a re-run)."""
    parent_id: str | None = None
    """For a child task (`ctx.child`, `ctx.start_child`): the task that started it (of
    the same tenant); None for a top-level task."""
    steps_done: int = 0
    current_step: str | None = None
    cancel_requested: bool = False
    phase: TaskPhase = TaskPhase.EXECUTION
    home_queue: str | None = None
    """The queue it was submitted to, once a step that names another queue routed it
    (`queue` is where it is now; None: never routed; ADR 93)."""
    concurrency_key: str | None = None
    """The key whose limit it counts against, `tenant/name` (`*/name` fleet-wide):
    while the key is at its limit the task waits with reason `concurrency` (ADR 89)."""
    spend_budget: Budget | None = None
    """The task's own limit on spend in dollars and tokens (`spend_budget=` at submit,
    else its workflow's), None for none (docs/flow-control.md)."""

    def to_json(self) -> dict[str, Any]:
        """The task as the HTTP API shows it (and the client reads it back): `to_dict`
        with the times in RFC 3339 (`tether.models.times`)."""
        data = self.to_dict()
        for name in TIME_FIELDS:
            data[name] = format_time(data[name])
        return data

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data, with `steps_done` and `current_step` grouped as
        `progress`; times stay epoch seconds (the API's view serializes them)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["status"] = str(self.status)
        data["wait_reason"] = None if self.wait_reason is None else str(self.wait_reason)
        data["phase"] = str(self.phase)
        data["error"] = None if self.error is None else self.error.to_json()
        data["spend_budget"] = None if self.spend_budget is None else self.spend_budget.to_json()
        data["progress"] = {
            "current_step": data.pop("current_step"),
            "steps_done": data.pop("steps_done"),
        }
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Task:
        """The inverse of `to_json` (fields missing from `data` take their defaults;
        times may also be epoch seconds)."""
        values = {k: data[k] for k in _FIELD_NAMES if k in data}
        for name in TIME_FIELDS:
            if values.get(name) is not None:
                values[name] = parse_time(values[name])
        progress = data.get("progress") or {}
        values["steps_done"] = progress.get("steps_done", data.get("steps_done", 0))
        values["current_step"] = progress.get("current_step", data.get("current_step"))
        values["input"] = data.get("input")
        values["status"] = TaskStatus(data["status"])
        reason = data.get("wait_reason")
        values["wait_reason"] = WaitReason(reason) if reason else None
        values["error"] = TaskError.from_json(data.get("error"))
        values["cancel_requested"] = bool(data.get("cancel_requested", False))
        values["phase"] = TaskPhase(data.get("phase") or TaskPhase.EXECUTION)
        values["spend_budget"] = Budget.from_json(data.get("spend_budget"))
        return cls(**values)


TASK_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Task))
"""The task's fields, declared once (by `Task`): the store's column list and the API's
task view derive from it."""
_FIELD_NAMES = frozenset(TASK_FIELDS)
TIME_FIELDS = ("created_at", "updated_at", "run_at", "started_at", "finished_at", "deadline")
"""The task's fields that are times (epoch seconds here, RFC 3339 in `to_json`)."""


@dataclass
class TaskFilter:
    """Criteria for listing tasks; all optional except the tenant (None = all tenants)."""

    tenant: str | None = None
    status: list[TaskStatus] | None = None
    workflow: str | None = None
    correlation_id: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    forked_from: str | None = None
    parent_id: str | None = None
    """Only the children of this task (`Task.parent_id`)."""
    error_fingerprint: str | None = None
    after_id: str | None = None
    """Cursor: return tasks with ids smaller than this one (newest first)."""
    short_id: str | None = None
    """Only tasks whose id begins or ends with this (a short id, as the CLI shows)."""
    limit: int = 50
