"""Retention: ended tasks older than the configured age are deleted with their logs,
and dead-letter groups (with their audit trail) once quiet for theirs (docs/dlq.md).

Deletion runs in small batches (one short transaction each, with a pause between) so
it never holds locks that workers or the API wait on; on PostgreSQL concurrent
sweepers skip each other's rows, so running one per worker is safe.
"""

from __future__ import annotations

import asyncio
import logging
import random

from tether.clock import Clock
from tether.store.availability import failure_level
from tether.store.base import Store

log = logging.getLogger("tether.retention")

SWEEP_EVERY = 600.0
"""Seconds between sweeps of one worker (with jitter, so a fleet spreads out)."""
FIRST_SWEEP_WITHIN = 60.0
"""A worker's first sweep comes at a random point this many seconds after it starts."""
BATCH = 500
PAUSE = 0.05
"""Seconds between batches: lets other transactions through."""


async def purge_ended(
    store: Store,
    clock: Clock,
    older_than: float,
    *,
    batch: int = BATCH,
    pause: float = PAUSE,
    max_batches: int | None = None,
) -> int:
    """Delete ended tasks that finished more than `older_than` seconds ago; return how
    many. Stops when nothing is left (or after `max_batches`)."""
    cutoff = clock.now() - older_than
    total, batches = 0, 0
    while max_batches is None or batches < max_batches:
        deleted = await store.purge(cutoff, batch, now=clock.now())
        total += deleted
        batches += 1
        if deleted < batch:
            break
        await asyncio.sleep(pause)
    if total:
        log.info("retention: purged %d ended tasks older than %.0fs", total, older_than)
    return total


async def purge_dead_letters(
    store: Store, clock: Clock, quiet_for: float, *, batch: int = BATCH, pause: float = PAUSE
) -> int:
    """Delete dead-letter groups without open members and with no failure or action for
    `quiet_for` seconds, with their audit trail; return how many."""
    now = clock.now()
    total = 0
    while True:
        deleted = await store.purge_dlq(now - quiet_for, now, batch)
        total += deleted
        if deleted < batch:
            break
        await asyncio.sleep(pause)
    if total:
        log.info("retention: purged %d quiet dead-letter groups", total)
    return total


async def retention_loop(
    store: Store, clock: Clock, older_than: float, dlq_quiet_for: float | None = None
) -> None:
    """Sweep forever, about every `SWEEP_EVERY` seconds; errors are logged, not raised.
    With `dlq_quiet_for`, quiet dead-letter groups are purged too."""
    await asyncio.sleep(random.uniform(0, FIRST_SWEEP_WITHIN))
    while True:
        try:
            await purge_ended(store, clock, older_than)
            if dlq_quiet_for is not None:
                await purge_dead_letters(store, clock, dlq_quiet_for)
        except Exception as exc:
            log.log(failure_level(exc), "retention sweep failed: %s", exc)
        await asyncio.sleep(SWEEP_EVERY * random.uniform(0.8, 1.2))
