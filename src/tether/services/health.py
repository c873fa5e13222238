"""Queue health: what the metrics, the readiness probe and (later) the console show."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

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


async def database_ready(app: Tether, timeout: float) -> bool:
    """The database answers within `timeout` seconds."""
    try:
        await asyncio.wait_for(app.store.schema_version(), timeout)
    except Exception:
        return False
    return True
