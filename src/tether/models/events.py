"""The append-only audit log of a task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Event:
    """One append-only entry of the audit log: a transition or a step outcome."""

    id: int
    task_id: str
    tenant: str
    at: float
    type: str
    prior_status: str | None = None
    new_status: str | None = None
    attempt: int | None = None
    worker: str | None = None
    step: str | None = None
    error_class: str | None = None
    decision: str | None = None
    data: dict[str, Any] | None = None
