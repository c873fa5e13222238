"""`Client.schedules`: the schedule endpoints of the HTTP API, for `tether.Client`.

async with Client(url, token=TOKEN) as client:
    await client.schedules.create("morning", "report", "0 7 * * *", timezone="Europe/Lisbon")
    await client.schedules.pause("morning")
    task = await client.schedules.trigger("morning")      # run it now, paused or not
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from tether.models import Task
from tether.models.schedules import (
    DEFAULT_MAX_MISSED,
    MissedTicks,
    Schedule,
    ScheduleOrigin,
    ScheduleStatus,
)
from tether.models.times import parse_time

Request = Callable[..., Awaitable[httpx.Response]]


def _time(value: Any) -> float | None:
    return None if value is None else parse_time(value)


def schedule_from_json(data: Mapping[str, Any], tenant: str = "") -> Schedule:
    """A `Schedule` from the API's JSON (the tenant is the caller's, not in the body)."""
    return Schedule(
        tenant=tenant,
        name=data["name"],
        workflow=data["workflow"],
        cron=data["cron"],
        timezone=data["timezone"],
        input=data.get("input"),
        missed=MissedTicks(data["missed"]),
        max_missed=data["max_missed"],
        status=ScheduleStatus(data["status"]),
        next_at=_time(data.get("next_run_at")),
        origin=ScheduleOrigin(data["origin"]),
        last_tick_at=_time(data.get("last_tick_at")),
        last_task_id=data.get("last_task_id"),
        last_error=data.get("last_error"),
        created_at=parse_time(data["created_at"]),
        updated_at=parse_time(data["updated_at"]),
        created_by=data.get("created_by"),
    )


class SchedulesClient:
    """Schedules over the API (`Client.schedules`). Reads, pause, resume and trigger
    retry like the rest of the client (a trigger always carries an idempotency key);
    creating and deleting do not."""

    def __init__(self, request: Request) -> None:
        self._request = request

    async def create(
        self,
        name: str,
        workflow: str,
        cron: str,
        *,
        timezone: str = "UTC",
        input: Any = None,
        missed: MissedTicks | str = MissedTicks.ONCE,
        max_missed: int = DEFAULT_MAX_MISSED,
    ) -> Schedule:
        """A new schedule, active from its first tick after now (`ApiError` 409 when
        the name is taken, 422 for a bad expression, zone, workflow or input)."""
        body = {
            "name": name,
            "workflow": workflow,
            "cron": cron,
            "timezone": timezone,
            "input": input,
            "missed": str(missed),
            "max_missed": max_missed,
        }
        response = await self._request("POST", "/v1/schedules", retry=False, json=body)
        return schedule_from_json(response.json())

    async def list_schedules(
        self, *, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[Schedule], str | None]:
        """A page of schedules by name, and the cursor of the next page."""
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await self._request("GET", "/v1/schedules", retry=True, params=params)
        data = response.json()
        return [schedule_from_json(s) for s in data["items"]], data.get("next_cursor")

    async def get(self, name: str) -> Schedule:
        """One schedule (`NotFoundError` when there is none)."""
        response = await self._request("GET", f"/v1/schedules/{name}", retry=True)
        return schedule_from_json(response.json())

    async def pause(self, name: str) -> Schedule:
        """Stop its ticks from starting tasks."""
        response = await self._request("POST", f"/v1/schedules/{name}/pause", retry=True)
        return schedule_from_json(response.json())

    async def resume(self, name: str) -> Schedule:
        """Start it again from its first tick after now."""
        response = await self._request("POST", f"/v1/schedules/{name}/resume", retry=True)
        return schedule_from_json(response.json())

    async def delete(self, name: str) -> None:
        """Delete it (the tasks it started stay)."""
        await self._request("DELETE", f"/v1/schedules/{name}", retry=False)

    async def trigger(self, name: str, *, idempotency_key: str | None = None) -> Task:
        """Start its workflow with its input now; the task. Without `idempotency_key` a
        fresh one is sent, so this call's own retries start one task."""
        key = idempotency_key or f"client-{uuid.uuid4()}"
        response = await self._request(
            "POST", f"/v1/schedules/{name}/trigger", retry=True, headers={"Idempotency-Key": key}
        )
        return Task.from_json(response.json())
