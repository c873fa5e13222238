"""Group commit from the engine's side: many running tasks, one transaction.

Every running task hands its step records and transitions to the worker's committer
and awaits the result. While one batch is being committed, the next accumulates, so the
number of transactions adapts to load with no added latency at idle.

While the database is unreachable (`StoreUnavailable`) a batch is retried for as long
as the outage lasts, and at once when the store finds the database back: every
operation is fenced by its task's attempt, so one that lands late, or twice, is
harmless, and a run waiting for its commit keeps its task instead of giving it up
(ADR 71). Once the worker is stopping, the wait is bounded (`wind_down`).
"""

from __future__ import annotations

import asyncio
import logging

from tether.clock import Clock
from tether.errors import StoreUnavailable
from tether.store.base import Op, Store

log = logging.getLogger("tether.committer")

MAX_BATCH = 1000
RETRY_FOR = 30.0
"""Seconds to keep retrying a batch that fails for another retryable reason (locks,
serialization failures)."""
RETRY_MAX_DELAY = 1.0
"""Longest pause, in seconds, between two attempts at a failing batch."""


class Committer:
    """Collects worker operations and commits them in batches, in submission order."""

    def __init__(self, store: Store, worker: str, clock: Clock) -> None:
        self._store = store
        self._worker = worker
        self._clock = clock
        self._pending: list[tuple[Op, asyncio.Future[bool]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._busy = False
        self._give_up_at: float | None = None
        """Loop time after which an unreachable database fails the batch (`wind_down`)."""

    @property
    def closing(self) -> bool:
        """`close` was called: operations submitted now may never be committed."""
        return self._closing

    @property
    def idle(self) -> bool:
        """Nothing queued and no batch being committed."""
        return not self._pending and not self._busy

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="tether-committer")

    def submit(self, op: Op) -> asyncio.Future[bool]:
        """Queue `op`; the future says whether it applied (False: fenced off)."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((op, fut))
        self._wake.set()
        return fut

    def wind_down(self, within: float) -> None:
        """The worker is stopping: from `within` seconds on, a batch the unreachable
        database refuses fails instead of waiting for it (its tasks' leases expire and
        other workers take them over)."""
        give_up = asyncio.get_running_loop().time() + within
        if self._give_up_at is None or give_up < self._give_up_at:
            self._give_up_at = give_up

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                self._busy = True
                try:
                    await self._commit(batch)
                finally:
                    self._busy = False
            if self._closing and not self._pending:
                return

    async def _commit(self, batch: list[tuple[Op, asyncio.Future[bool]]]) -> None:
        ops = [op for op, _ in batch]
        loop = asyncio.get_running_loop()
        delay, waited, failing = 0.05, 0.0, False
        while True:
            try:
                results = await self._store.commit(ops, self._worker, self._clock.now())
                break
            except Exception as exc:
                if not _retryable(exc) and len(batch) > 1:
                    # One bad operation must not sink its neighbours: commit one by one.
                    for item in batch:
                        await self._commit([item])
                    return
                if not self._keep_trying(exc, waited, loop.time()):
                    log.error("commit of %d operations failed: %s", len(ops), exc)
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    return
                if not failing and not isinstance(exc, StoreUnavailable):
                    log.warning("commit failed (%s); retrying", exc)  # an outage: said once
                failing = True
                started = loop.time()
                await asyncio.sleep(delay)
                if isinstance(exc, StoreUnavailable):  # go again the moment it is back
                    await self._store.availability.wait_reachable(RETRY_MAX_DELAY)
                waited += loop.time() - started
                delay = min(delay * 2, RETRY_MAX_DELAY)
        for (_, fut), ok in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(ok)

    def _keep_trying(self, exc: Exception, waited: float, now: float) -> bool:
        """Whether a failed batch is worth another attempt: an unreachable database for
        as long as it lasts (until `wind_down`'s limit), other retryable failures for
        `RETRY_FOR` seconds."""
        if isinstance(exc, StoreUnavailable):
            return self._give_up_at is None or now < self._give_up_at
        return _retryable(exc) and waited < RETRY_FOR


def _retryable(exc: Exception) -> bool:
    """Database errors worth retrying: an unreachable database, lost connections, locks,
    serialization."""
    names = {cls.__name__ for cls in type(exc).__mro__}  # driver subclasses count too
    return bool(names & {"OperationalError", "InterfaceError", "PoolTimeout"}) or isinstance(
        exc, StoreUnavailable | ConnectionError | TimeoutError
    )
