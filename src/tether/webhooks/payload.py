"""The body of a delivery: the event, with a summary of its task.

    {"type": "task.succeeded", "timestamp": "2030-01-01T00:00:00.123456Z",
     "data": {"event": {...every field of the event...},
              "task": {"id": ..., "workflow": ..., "status": ..., ...}}}

`data.task` is the task's identity and state when the delivery was prepared (it may be
newer than the event: compare `data.event.new_status`); never its input or result,
which stay behind the API (`GET /v1/tasks/{id}`). `null` when the task is gone.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import orjson

from tether.models import Event
from tether.store.outbox import TaskSummary


def event_json(event: Event) -> dict[str, object]:
    """An event as plain JSON values (every field)."""
    return dataclasses.asdict(event)


def body(event: Event, task: TaskSummary | None) -> str:
    """The JSON text sent for `event` (identical on every attempt of a delivery)."""
    at = datetime.fromtimestamp(event.at, UTC).isoformat().replace("+00:00", "Z")
    return orjson.dumps(
        {
            "type": event.type,
            "timestamp": at,
            "data": {"event": event_json(event), "task": dict(task) if task else None},
        }
    ).decode()


def webhook_id(subscription_id: str, event_id: int) -> str:
    """The `webhook-id` of one event for one subscription: unique across databases
    (the subscription's id is a UUID) and the same on every attempt and replay."""
    return f"msg_{subscription_id.replace('-', '')}_{event_id}"
