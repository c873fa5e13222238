"""Cron schedules: create, list, get, pause, resume, delete, trigger now. The HTTP API
(`/v1/schedules`), the CLI (`tether schedules`) and, through the API, `tether.Client`
call these; every operation is scoped to a tenant (another tenant's schedule does not
exist for the caller).

A schedule is checked before anything is stored: its name, cron expression, time zone
and policy (`InvalidSchedule`), its workflow (`UnknownWorkflow`) and its input against
the workflow's signature (`InputValidationError`). See docs/schedules.md and ADR 77.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from tether import serde
from tether.handle import TaskHandle
from tether.ids import new_id
from tether.models.schedules import Schedule, ScheduleOrigin
from tether.schedules.cron import Cron
from tether.schedules.spec import ScheduleSpec
from tether.schedules.ticks import trigger_key

if TYPE_CHECKING:
    from tether.app import Tether


async def create(
    app: Tether, tenant: str, spec: ScheduleSpec, *, created_by: str | None = None
) -> Schedule:
    """A new schedule, active, due at its first tick from now. Raises `ScheduleExists`
    when the tenant has one of that name."""
    checked = spec.check()
    encoded = app.registry_lookup(checked.workflow).encode_input(checked.input)
    await app.open()
    row = replace(checked, input=serde.loads(encoded)).row(
        tenant, app.clock.now(), origin=ScheduleOrigin.API, created_by=created_by
    )
    return await app.store.create_schedule(row)


async def get(app: Tether, name: str, tenant: str) -> Schedule | None:
    """A schedule, or None (also another tenant's)."""
    await app.open()
    return await app.store.get_schedule(tenant, name)


async def list_(
    app: Tether, tenant: str | None, *, after: str | None = None, limit: int = 50
) -> list[Schedule]:
    """A tenant's schedules (None: every tenant's), by name, after the name `after`."""
    await app.open()
    return await app.store.list_schedules(tenant, after=after, limit=limit)


async def pause(app: Tether, name: str, tenant: str) -> Schedule | None:
    """Stop a schedule's ticks from starting tasks (tasks already started go on)."""
    await app.open()
    return await app.store.set_schedule_status(tenant, name, True, None, app.clock.now())


async def resume(app: Tether, name: str, tenant: str) -> Schedule | None:
    """Start a paused schedule again from its first tick after now: the ticks that
    passed while it was paused are not missed ticks, and none of them runs."""
    current = await get(app, name, tenant)
    if current is None or not current.paused:
        return current
    now = app.clock.now()
    next_at = Cron.of(current.cron, current.timezone).next_after(now)
    return await app.store.set_schedule_status(tenant, name, False, next_at, now)


async def delete(app: Tether, name: str, tenant: str) -> bool:
    """Delete a schedule (the tasks it started stay); False when there is none. A
    schedule declared in code comes back when a process declaring it starts."""
    await app.open()
    return await app.store.delete_schedule(tenant, name)


async def trigger(
    app: Tether, name: str, tenant: str, *, idempotency_key: str | None = None
) -> TaskHandle | None:
    """Start the schedule's workflow with its input now, paused or not, outside its
    ticks; None when there is no such schedule. The same `idempotency_key` again
    returns the same task (`handle.created` False)."""
    current = await get(app, name, tenant)
    if current is None:
        return None
    key = trigger_key(current.name, idempotency_key or new_id())
    (handle,) = await app.submit_batch([app.schedule_task(current, None, key)])
    return handle


__all__ = ["create", "delete", "get", "list_", "pause", "resume", "trigger"]
