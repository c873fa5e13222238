"""`SQLSchedules`: the schedule operations of the SQL stores (`ScheduleStore`), mapped
onto the shared logic in `tether.store.sql.schedules`."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tether.models.schedules import Schedule
from tether.store.base import Submitted
from tether.store.hub import Hub
from tether.store.schedules import Agenda, Firing, ScheduleStore
from tether.store.sql import Conn, Dialect
from tether.store.sql import schedules as sqls

T = TypeVar("T")


class SQLSchedules(ScheduleStore, abc.ABC):
    """Schedule operations over `_run` (one transaction each)."""

    dialect: Dialect
    hub: Hub

    @abc.abstractmethod
    async def _run(self, work: Callable[[Conn], Awaitable[T]], *, write: bool = True) -> T:
        """Run `work` in a transaction of its own (`SQLStore._run`)."""

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        created = await self._run(lambda c: sqls.create_schedule(c, schedule))
        self.hub.notify_schedules()
        return created

    async def declare_schedules(self, schedules: list[Schedule], now: float) -> None:
        if schedules:
            await self._run(lambda c: sqls.declare_schedules(c, schedules, now))
            self.hub.notify_schedules()

    async def get_schedule(self, tenant: str, name: str) -> Schedule | None:
        return await self._run(lambda c: sqls.get_schedule(c, tenant, name), write=False)

    async def list_schedules(
        self, tenant: str | None, *, after: str | None = None, limit: int = 50
    ) -> list[Schedule]:
        return await self._run(lambda c: sqls.list_schedules(c, tenant, after, limit), write=False)

    async def set_schedule_status(
        self, tenant: str, name: str, paused: bool, next_at: float | None, now: float
    ) -> Schedule | None:
        found = await self._run(
            lambda c: sqls.set_schedule_status(c, tenant, name, paused, next_at, now)
        )
        self.hub.notify_schedules()
        return found

    async def delete_schedule(self, tenant: str, name: str) -> bool:
        deleted = await self._run(lambda c: sqls.delete_schedule(c, tenant, name))
        self.hub.notify_schedules()
        return deleted

    async def schedule_agenda(self, now: float, workflows: list[str], limit: int) -> Agenda:
        if not workflows:
            return Agenda([], None)
        d = self.dialect
        return await self._run(
            lambda c: sqls.schedule_agenda(c, d, now, workflows, limit), write=False
        )

    async def fire_schedule(self, firing: Firing, now: float) -> list[Submitted] | None:
        d = self.dialect
        done = await self._run(lambda c: sqls.fire_schedule(c, d, firing, now))
        for s in done or ():
            if s.created:
                self.hub.notify_work(s.task.queue)
        if done:
            self.hub.notify_events()
        return done
