"""Request and response bodies of the schedule endpoints (`tether.api.schedules`).
Times are RFC 3339 in responses, as everywhere in the API (`tether.api.schemas.Time`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tether.api.schemas import Time
from tether.models.schedules import (
    DEFAULT_MAX_MISSED,
    MissedTicks,
    Schedule,
    ScheduleOrigin,
    ScheduleStatus,
)
from tether.schedules.cron import Cron
from tether.schedules.spec import MAX_MISSED_LIMIT, ScheduleSpec
from tether.schedules.ticks import upcoming

UPCOMING = 5
"""Next ticks a schedule shows."""


class ScheduleIn(BaseModel):
    """A new schedule."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "morning-report",
                    "workflow": "report",
                    "cron": "0 7 * * *",
                    "timezone": "Europe/Lisbon",
                    "input": {"region": "pt"},
                    "missed": "once",
                }
            ]
        },
    )

    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Unique per tenant: letters, digits, '.', '_', '-'",
    )
    workflow: str = Field(min_length=1, max_length=200, description="Registered workflow name")
    cron: str = Field(
        min_length=1,
        max_length=200,
        description="Five fields (minute hour day-of-month month day-of-week), a sixth for "
        "seconds last, or @hourly, @daily, @weekly, @monthly, @yearly",
    )
    timezone: str = Field(default="UTC", min_length=1, max_length=64, description="IANA zone")
    input: Any = Field(default=None, description="The input of every task it starts")
    missed: MissedTicks = Field(
        default=MissedTicks.ONCE,
        description="Ticks missed while no scheduler ran: skip, once (the latest), all",
    )
    max_missed: int = Field(
        default=DEFAULT_MAX_MISSED,
        ge=1,
        le=MAX_MISSED_LIMIT,
        description="With missed=all: the most missed ticks run (the newest)",
    )

    def spec(self) -> ScheduleSpec:
        """The definition this body asks for."""
        return ScheduleSpec(
            name=self.name,
            workflow=self.workflow,
            cron=self.cron,
            timezone=self.timezone,
            input=self.input,
            missed=self.missed,
            max_missed=self.max_missed,
        )


class ScheduleOut(BaseModel):
    """A schedule: its definition, whether it runs, its next ticks and its last one."""

    name: str
    workflow: str
    cron: str
    timezone: str
    input: Any
    missed: MissedTicks
    max_missed: int
    status: ScheduleStatus
    origin: ScheduleOrigin = Field(description="api, or code (declared with @app.schedule)")
    next_run_at: Time | None = Field(description="The next tick (null while paused)")
    upcoming: list[Time] = Field(description=f"The next {UPCOMING} ticks")
    last_tick_at: Time | None = Field(description="The latest tick that started a task")
    last_task_id: str | None = Field(description="The task of the latest tick or trigger")
    last_error: str | None = Field(description="Why the latest tick started no task")
    created_by: str | None
    created_at: Time
    updated_at: Time

    @classmethod
    def of(cls, s: Schedule) -> ScheduleOut:
        return cls(
            name=s.name,
            workflow=s.workflow,
            cron=s.cron,
            timezone=s.timezone,
            input=s.input,
            missed=s.missed,
            max_missed=s.max_missed,
            status=s.status,
            origin=s.origin,
            next_run_at=s.next_at,
            upcoming=upcoming(Cron(s.cron, s.timezone), s.next_at, UPCOMING),
            last_tick_at=s.last_tick_at,
            last_task_id=s.last_task_id,
            last_error=s.last_error,
            created_by=s.created_by,
            created_at=s.created_at,
            updated_at=s.updated_at,
        )


class ScheduleList(BaseModel):
    """A page of schedules, by name."""

    items: list[ScheduleOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")
