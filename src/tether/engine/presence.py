"""Worker presence: each worker records what it claims, so tasks no live worker would
claim (a version nobody runs, during or after a rolling deploy) can be shown (ADR 64).

A worker writes its record when it starts and every `PRESENCE_EVERY` seconds, and
deletes it when it stops. A worker that vanished stops being renewed: after
`PRESENCE_TTL` seconds it no longer counts as live.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tether.clock import Clock
from tether.store.base import Store, WorkerPresence

log = logging.getLogger("tether.worker")

PRESENCE_EVERY = 10.0
"""Seconds between a worker's presence records."""
PRESENCE_TTL = 3 * PRESENCE_EVERY
"""A worker not seen for this many seconds is not live."""


async def record_presence(
    store: Store, clock: Clock, describe: Callable[[float], WorkerPresence]
) -> None:
    """Record the worker `describe(now)` returns; a failure is logged, not raised (the
    record is for operators: a missed one costs a moment of staleness)."""
    try:
        await store.worker_seen(describe(clock.now()))
    except Exception as exc:
        log.debug("recording worker presence failed: %s", exc)


async def presence_loop(
    store: Store, clock: Clock, describe: Callable[[float], WorkerPresence]
) -> None:
    """Renew the record every `PRESENCE_EVERY` seconds, forever."""
    while True:
        await asyncio.sleep(PRESENCE_EVERY)
        await record_presence(store, clock, describe)
