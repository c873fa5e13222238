"""What `tether schedules` does, and the two ways to do it: on the database through
`tether.services.schedules` (`LocalSchedules`), or over a server's HTTP API with
`tether.Client.schedules` (`RemoteSchedules`). `Operations.schedules` is one of them
(`tether.cli.operations`), so each command has one code path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from tether.errors import ScheduleNotFound
from tether.models import Task
from tether.models.schedules import Schedule
from tether.schedules.spec import ScheduleSpec
from tether.services import schedules as service

if TYPE_CHECKING:
    from tether.app import Tether
    from tether.client import Client

PAGE = 500
"""The API's largest page of schedules."""


class ScheduleOperations(Protocol):
    """The schedule commands' operations, for one tenant and identity."""

    async def create(self, spec: ScheduleSpec) -> Schedule:
        """A new schedule (`ScheduleExists`, `InvalidSchedule`, ...)."""
        ...

    async def list(self, limit: int) -> list[Schedule]:
        """Schedules by name, at most `limit`."""
        ...

    async def get(self, name: str) -> Schedule:
        """A schedule by name (`ScheduleNotFound` locally, a 404 over HTTP)."""
        ...

    async def pause(self, name: str) -> Schedule: ...

    async def resume(self, name: str) -> Schedule: ...

    async def delete(self, name: str) -> None: ...

    async def trigger(self, name: str, idempotency_key: str | None) -> Task:
        """Start the schedule's workflow now; the task."""
        ...


def _found(schedule: Schedule | None, name: str) -> Schedule:
    if schedule is None:
        raise ScheduleNotFound(f"no schedule {name!r}")
    return schedule


class LocalSchedules:
    """On `app`'s database, as `tenant`; `identity` creates."""

    def __init__(self, app: Tether, tenant: str, identity: str) -> None:
        self.app, self.tenant, self.identity = app, tenant, identity

    async def create(self, spec: ScheduleSpec) -> Schedule:
        return await service.create(self.app, self.tenant, spec, created_by=self.identity)

    async def list(self, limit: int) -> list[Schedule]:
        return await service.list_(self.app, self.tenant, limit=limit)

    async def get(self, name: str) -> Schedule:
        return _found(await service.get(self.app, name, self.tenant), name)

    async def pause(self, name: str) -> Schedule:
        return _found(await service.pause(self.app, name, self.tenant), name)

    async def resume(self, name: str) -> Schedule:
        return _found(await service.resume(self.app, name, self.tenant), name)

    async def delete(self, name: str) -> None:
        if not await service.delete(self.app, name, self.tenant):
            raise ScheduleNotFound(f"no schedule {name!r}")

    async def trigger(self, name: str, idempotency_key: str | None) -> Task:
        handle = await service.trigger(self.app, name, self.tenant, idempotency_key=idempotency_key)
        if handle is None:
            raise ScheduleNotFound(f"no schedule {name!r}")
        return handle.initial


class RemoteSchedules:
    """Over HTTP with `client`, as its credential."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def create(self, spec: ScheduleSpec) -> Schedule:
        return await self.client.schedules.create(
            spec.name,
            spec.workflow,
            spec.cron,
            timezone=spec.timezone,
            input=spec.input,
            missed=spec.missed,
            max_missed=spec.max_missed,
        )

    async def list(self, limit: int) -> list[Schedule]:
        found: list[Schedule] = []
        cursor: str | None = None
        while len(found) < limit:
            page, cursor = await self.client.schedules.list_schedules(
                cursor=cursor, limit=min(PAGE, limit - len(found))
            )
            found += page
            if cursor is None:
                break
        return found

    async def get(self, name: str) -> Schedule:
        return await self.client.schedules.get(name)

    async def pause(self, name: str) -> Schedule:
        return await self.client.schedules.pause(name)

    async def resume(self, name: str) -> Schedule:
        return await self.client.schedules.resume(name)

    async def delete(self, name: str) -> None:
        await self.client.schedules.delete(name)

    async def trigger(self, name: str, idempotency_key: str | None) -> Task:
        return await self.client.schedules.trigger(name, idempotency_key=idempotency_key)
