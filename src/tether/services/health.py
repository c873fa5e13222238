"""Queue health: what the metrics, the readiness probe and (later) the console show."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tether.engine.presence import PRESENCE_TTL
from tether.errors import StoreUnavailable
from tether.models.step_limits import StepLimitUsage
from tether.store.base import QueuedVersion, WorkerPresence

if TYPE_CHECKING:
    from tether.app import Tether


@dataclass
class QueueHealth:
    """Task counts by (queue, status) and, per queue, the age of the oldest runnable
    queued task in seconds."""

    counts: dict[tuple[str, str], int]
    oldest: dict[str, float]


async def queues(app: Tether, tenant: str | None = None) -> QueueHealth:
    """Depth and oldest age per queue: of one tenant's tasks, or (None) of every
    tenant's (the deployment's operators' figures)."""
    await app.open()
    counts = await app.store.count_by_status(tenant)
    oldest = await app.store.oldest_queued(app.clock.now(), tenant)
    return QueueHealth(counts, oldest)


@dataclass
class Unserved:
    """Runnable tasks no live worker claims: their (workflow, version) is registered by
    no worker serving their queue. They wait, queued, until one starts (ADR 64)."""

    waiting: list[QueuedVersion]
    """Per (queue, workflow, version): how many, and the oldest's age in seconds."""
    workers: list[WorkerPresence]
    """The live workers that were taken into account."""


async def unserved(app: Tether) -> Unserved:
    """The queued tasks of a (workflow, version) that no live worker of their queue
    claims, across every tenant (operators' figures)."""
    await app.open()
    now = app.clock.now()
    queued = await app.store.queued_by_version(now)
    workers = await app.store.live_workers(now - PRESENCE_TTL)
    served = {(q, pair) for w in workers for q in w.queues for pair in w.workflows}
    waiting = [v for v in queued if (v.queue, (v.workflow, v.version)) not in served]
    return Unserved(waiting, workers)


async def step_limits(app: Tether, tenant: str | None = None) -> list[StepLimitUsage]:
    """Each step limit with its running and waiting steps: of `tenant`'s tasks (the
    limit is the fleet's: other tenants' steps are not counted for a tenant), or (None)
    of every tenant's."""
    await app.open()
    return await app.store.step_limit_usage(app.clock.now(), tenant)


async def database_unready(app: Tether, timeout: float) -> str | None:
    """Why the database cannot be used now, or None when it answers within `timeout`
    seconds. Known to be unreachable (a store operation found it so and nothing has
    succeeded since: ADR 71), it says so without asking; the reasons name no host."""
    availability = app.store.availability
    if not availability.reachable:
        return f"the database is unavailable: {availability.reason}"
    try:
        await asyncio.wait_for(app.store.schema_version(), timeout)
    except StoreUnavailable as exc:
        return f"the database is unavailable: {exc.reason}"
    except TimeoutError:
        return f"the database did not answer within {timeout:g}s"
    except Exception as exc:
        return f"the database answered with an error ({type(exc).__name__})"
    return None
