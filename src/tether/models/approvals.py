"""Requests for human approval, their decisions, and how to list them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Approval:
    """A request for human approval and its decisions."""

    id: str
    task_id: str
    tenant: str
    seq: int
    status: str  # pending | approved | rejected
    risk: str
    request: dict[str, Any]
    required: int
    submitter: str | None
    created_at: float
    expires_at: float | None = None
    on_timeout: str = "reject"
    decisions: list[dict[str, Any]] = field(default_factory=list)
    resolution: str | None = None  # reviewer | auto | sampled | timeout
    changes: dict[str, Any] | None = None
    reason: str | None = None
    decided_at: float | None = None
    workflow: str | None = None


@dataclass
class ApprovalFilter:
    """Criteria for the approval inbox."""

    tenant: str | None = None
    status: str | None = None
    risk: str | None = None
    task_id: str | None = None
    """Only the approvals of this task."""
    short_id: str | None = None
    """Only approvals whose id begins or ends with this (a short id, as the CLI shows)."""
    before: tuple[float, str] | None = None
    """Cursor: only approvals after this `(created_at, id)` in the inbox's order (newest
    first, ties by id), i.e. the position of the last one of the previous page."""
    limit: int = 100
