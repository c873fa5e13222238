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


async def queues(app: Tether) -> QueueHealth:
    """Depth and oldest age per queue, across every tenant (operators' figures)."""
    await app.open()
    counts = await app.store.count_by_status()
    oldest = await app.store.oldest_queued(app.clock.now())
    return QueueHealth(counts, oldest)


async def database_ready(app: Tether, timeout: float) -> bool:
    """The database answers within `timeout` seconds."""
    try:
        await asyncio.wait_for(app.store.schema_version(), timeout)
    except Exception:
        return False
    return True
