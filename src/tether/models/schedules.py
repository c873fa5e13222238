"""Cron schedules, as plain records (docs/schedules.md, ADR 77).

A schedule starts its workflow with a fixed input at every tick of a cron expression
in a time zone, as one task per tick: the tick is the task's idempotency key, so any
number of schedulers racing on it create one task.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class MissedTicks(StrEnum):
    """What a scheduler does with ticks that passed while none ran (a tick counts as
    missed once it is more than `tether.schedules.ticks.ON_TIME` seconds late)."""

    SKIP = "skip"
    """Run none of them: the next task is the next tick's."""
    ONCE = "once"
    """Run one task for all of them, for the latest (the default)."""
    ALL = "all"
    """Run one task for each, the newest `max_missed` of them (older ones are skipped)."""


class ScheduleStatus(StrEnum):
    """Whether a schedule's ticks start tasks."""

    ACTIVE = "active"
    PAUSED = "paused"
    """No ticks fire; resuming starts again from the next tick after the resume."""


class ScheduleOrigin(StrEnum):
    """Who made a schedule."""

    API = "api"
    """Created through the API, the CLI or `tether.services.schedules`."""
    CODE = "code"
    """Declared with `@app.schedule`: stored (or updated) when a worker or server of
    the app starts. Its paused state is the operator's, never reset by a restart."""


DEFAULT_MAX_MISSED = 10
"""The most missed ticks `MissedTicks.ALL` runs by default."""


@dataclass
class Schedule:
    """A tenant's schedule `name`: start `workflow` with `input` at each tick of `cron`
    (in the IANA time zone `timezone`)."""

    tenant: str
    name: str
    workflow: str
    cron: str
    timezone: str = "UTC"
    input: Any = None
    """The input of every task it starts (JSON-able; validated against the workflow)."""
    missed: MissedTicks = MissedTicks.ONCE
    max_missed: int = DEFAULT_MAX_MISSED
    """With `missed=all`: the most missed ticks one catch-up runs (the newest)."""
    status: ScheduleStatus = ScheduleStatus.ACTIVE
    next_at: float | None = None
    """The next tick it fires (epoch seconds); None while paused."""
    origin: ScheduleOrigin = ScheduleOrigin.API
    last_tick_at: float | None = None
    """The latest tick that started a task."""
    last_task_id: str | None = None
    """The task of the latest tick (or of a `trigger`)."""
    last_error: str | None = None
    """Why the latest tick started no task (its input no longer fits the workflow, say)."""
    created_at: float = 0.0
    updated_at: float = 0.0
    created_by: str | None = None
    revision: int = 0
    """Counts the changes of the row: a firing applies only to the revision it read."""

    @property
    def paused(self) -> bool:
        """Whether its ticks are off."""
        return self.status == ScheduleStatus.PAUSED
