"""`ScheduleSpec`: what a schedule says (its name, workflow, cron expression, time zone,
input and missed-tick policy), validated the same way from every channel: the
`@app.schedule` decorator, the API, the CLI and `tether.Client`."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from tether.errors import InvalidSchedule
from tether.models.schedules import (
    DEFAULT_MAX_MISSED,
    MissedTicks,
    Schedule,
    ScheduleOrigin,
    ScheduleStatus,
)
from tether.schedules.cron import Cron

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A schedule name: letters, digits, `.`, `_`, `-`, up to 100 characters."""
MAX_MISSED_LIMIT = 1000
"""The largest `max_missed` accepted (one catch-up's tasks are one transaction)."""


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule's definition. `check()` returns it validated and normalised."""

    name: str
    workflow: str
    cron: str
    timezone: str = "UTC"
    input: Any = None
    missed: MissedTicks | str = MissedTicks.ONCE
    max_missed: int = DEFAULT_MAX_MISSED

    def check(self, *, named: bool = True) -> ScheduleSpec:
        """This spec validated (`InvalidSchedule` names the field), the cron expression
        normalised and `missed` a `MissedTicks`; without `named`, all but the name."""
        if named and not NAME.fullmatch(self.name):
            raise InvalidSchedule(
                "name", f"{self.name!r}: letters, digits, '.', '_' or '-', at most 100"
            )
        cron = Cron.of(self.cron, self.timezone)
        try:
            missed = MissedTicks(self.missed)
        except ValueError:
            known = ", ".join(m.value for m in MissedTicks)
            raise InvalidSchedule("missed", f"{self.missed!r} (one of: {known})") from None
        if not 1 <= self.max_missed <= MAX_MISSED_LIMIT:
            raise InvalidSchedule("max_missed", f"between 1 and {MAX_MISSED_LIMIT}")
        return replace(self, cron=cron.expression, missed=missed)

    @property
    def ticks(self) -> Cron:
        """Its cron expression in its time zone."""
        return Cron.of(self.cron, self.timezone)

    def row(
        self, tenant: str, now: float, *, origin: ScheduleOrigin, created_by: str | None
    ) -> Schedule:
        """The record of a new schedule made from this spec at `now` (active, due at
        the first tick after `now`)."""
        spec = self.check()
        return Schedule(
            tenant=tenant,
            name=spec.name,
            workflow=spec.workflow,
            cron=spec.cron,
            timezone=spec.timezone,
            input=spec.input,
            missed=MissedTicks(spec.missed),
            max_missed=spec.max_missed,
            status=ScheduleStatus.ACTIVE,
            next_at=spec.ticks.next_after(now),
            origin=origin,
            created_at=now,
            updated_at=now,
            created_by=created_by,
        )
