"""The schedule part of the store interface: the schedules themselves, the agenda a
scheduler reads, and the firing that starts a tick's tasks (ADR 77).

A firing is optimistic: it names the `revision` of the schedule it planned from, and
applies (moves `next_at` on and creates the tasks, in one transaction) only if the row
is still at that revision and active. Of several schedulers that planned the same tick
one applies; the others find a newer revision and do nothing. The tick is also the
task's idempotency key, so not even a lost race can create a second task for it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tether.models.schedules import Schedule

if TYPE_CHECKING:  # `tether.store.base` builds `Store` from this module's interface
    from tether.store.base import NewTask, Submitted


@dataclass(frozen=True)
class Agenda:
    """The active schedules due at a time (of some workflows), and the next tick of
    the others."""

    due: list[Schedule]
    next_at: float | None
    """The earliest `next_at` after the time asked about (None: no active schedule)."""


@dataclass
class Firing:
    """Fire the ticks of schedule (`tenant`, `name`) planned from `revision`: create
    `tasks`, move `next_at` on. With no tasks it only moves on (every tick missed and
    skipped, or an input that no longer fits: `error` says why)."""

    tenant: str
    name: str
    revision: int
    next_at: float
    tasks: list[NewTask] = field(default_factory=list)
    last_tick_at: float | None = None
    error: str | None = None


class ScheduleStore(abc.ABC):
    """The schedules' operations (a part of `Store`)."""

    @abc.abstractmethod
    async def create_schedule(self, schedule: Schedule) -> Schedule:
        """Store a new schedule; `ScheduleExists` when the tenant has one of that name."""

    @abc.abstractmethod
    async def declare_schedules(self, schedules: list[Schedule], now: float) -> None:
        """Store the schedules declared in code, in one transaction: new ones as given;
        existing ones take the given definition (workflow, input, cron, time zone,
        policy), keep their status, and keep their `next_at` unless the cron
        expression or time zone changed."""

    @abc.abstractmethod
    async def get_schedule(self, tenant: str, name: str) -> Schedule | None:
        """The tenant's schedule `name`, or None."""

    @abc.abstractmethod
    async def list_schedules(
        self, tenant: str | None, *, after: str | None = None, limit: int = 50
    ) -> list[Schedule]:
        """Schedules by name (of `tenant`, or of every tenant), from after `after`."""

    @abc.abstractmethod
    async def set_schedule_status(
        self, tenant: str, name: str, paused: bool, next_at: float | None, now: float
    ) -> Schedule | None:
        """Pause (`next_at` None) or resume (from `next_at`) a schedule; its new state,
        or None when there is no such schedule. Resuming an active schedule keeps it as
        it is; pausing a paused one too."""

    @abc.abstractmethod
    async def delete_schedule(self, tenant: str, name: str) -> bool:
        """Delete a schedule (its tasks stay); False when there is none."""

    @abc.abstractmethod
    async def schedule_agenda(self, now: float, workflows: list[str], limit: int) -> Agenda:
        """Up to `limit` active schedules of `workflows` due at `now` (`next_at` at or
        before it), earliest first, and the next tick after `now` of the others."""

    @abc.abstractmethod
    async def fire_schedule(self, firing: Firing, now: float) -> list[Submitted] | None:
        """Apply `firing` if the schedule is still at its revision and active: move it
        on and submit its tasks, in one transaction. None, with nothing done, when not
        (another scheduler fired it first, or it was paused, changed or deleted)."""
