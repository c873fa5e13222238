"""The HTTP API's JSON read back into Tether's records: tasks, steps, events and
approvals (what `tether.Client` returns). Times are epoch seconds or RFC 3339 text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tether.models import (
    Approval,
    AttemptError,
    Event,
    SpendLine,
    StepKind,
    StepRecord,
    StepStatus,
    Task,
    TaskError,
)
from tether.models.times import parse_time


def task_from_json(data: Mapping[str, Any]) -> Task:
    """A `Task` from the API's JSON (`Task.from_json`)."""
    return Task.from_json(data)


def spend_line_from_json(data: Mapping[str, Any], tenant: str, task_id: str) -> SpendLine:
    """A task's `SpendLine` from the `spend` of the API's task JSON."""
    return SpendLine.from_json(data, tenant=tenant, scope="task", subject=task_id, day="")


def event_from_json(data: Mapping[str, Any]) -> Event:
    """An `Event` from the API's JSON."""
    return Event(
        id=data["id"],
        task_id=data["task_id"],
        tenant=data.get("tenant", ""),
        at=parse_time(data["at"]),
        type=data["type"],
        prior_status=data.get("prior_status"),
        new_status=data.get("new_status"),
        attempt=data.get("attempt"),
        step=data.get("step"),
        error_class=data.get("error_class"),
        decision=data.get("decision"),
        data=data.get("data"),
    )


def _epoch(value: Any) -> float | None:
    """A time of the API (RFC 3339; epoch seconds from older servers), or None."""
    return None if value is None else parse_time(value)


def approval_from_json(data: Mapping[str, Any]) -> Approval:
    """An `Approval` from the API's JSON (an `ApprovalOut`)."""
    evidence = data.get("evidence")
    request: dict[str, Any] = {
        "summary": data.get("summary"),
        "evidence": evidence if isinstance(evidence, list) else [],
        "impact": data.get("impact"),
        "rollback": data.get("rollback"),
    }
    if data.get("budget") is not None:
        request["budget"] = data["budget"]
    return Approval(
        id=data["id"],
        task_id=data["task_id"],
        tenant=data.get("tenant", ""),
        seq=data.get("seq", 0),
        status=data["status"],
        risk=data["risk"],
        request=request,
        required=data["required_approvers"],
        submitter=data.get("submitter"),
        created_at=_epoch(data["created_at"]) or 0.0,
        expires_at=_epoch(data.get("expires_at")),
        on_timeout=data.get("on_timeout", "reject"),
        decisions=[{**d, "at": _epoch(d.get("at"))} for d in data.get("decisions") or ()],
        resolution=data.get("resolution"),
        changes=data.get("changes"),
        reason=data.get("reason"),
        decided_at=_epoch(data.get("decided_at")),
        workflow=data.get("workflow"),
    )


def step_from_json(data: Mapping[str, Any]) -> StepRecord:
    """A `StepRecord` from the API's JSON."""
    return StepRecord(
        task_id=data.get("task_id", ""),
        seq=data["seq"],
        name=data["name"],
        kind=StepKind(data["kind"]),
        status=StepStatus(data["status"]),
        attempts=data.get("attempts", 1),
        result=data.get("result"),
        error=TaskError.from_json(data.get("error")),
        started_at=_epoch(data.get("started_at")),
        finished_at=_epoch(data.get("finished_at")),
        wake_at=_epoch(data.get("wake_at")),
        meta=data.get("meta") or {},
        attempt_errors=tuple(_attempt_error(a) for a in data.get("attempt_errors") or ()),
    )


def _attempt_error(data: Mapping[str, Any]) -> AttemptError:
    times = {k: _epoch(data.get(k)) for k in ("started_at", "finished_at")}
    return AttemptError.from_json({**data, **times})
