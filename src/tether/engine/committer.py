"""Group commit from the engine's side: many running tasks, one transaction.

Every running task hands its step records and transitions to the worker's committer
and awaits the result. While one batch is being committed, the next accumulates, so the
number of transactions adapts to load with no added latency at idle.
"""

from __future__ import annotations

import asyncio
import logging

from tether.clock import Clock
from tether.store.base import Op, Store

log = logging.getLogger("tether.committer")

MAX_BATCH = 1000
RETRY_FOR = 30.0
"""Seconds to keep retrying a batch while the database is unreachable."""


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
        delay, waited = 0.05, 0.0
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
                if waited >= RETRY_FOR or not _retryable(exc):
                    log.error("commit of %d operations failed: %s", len(ops), exc)
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    return
                log.warning("commit failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 2.0)
        for (_, fut), ok in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(ok)


def _retryable(exc: Exception) -> bool:
    """Database errors worth retrying: lost connections, locks, serialization."""
    names = {cls.__name__ for cls in type(exc).__mro__}  # driver subclasses count too
    return bool(names & {"OperationalError", "InterfaceError", "PoolTimeout"}) or isinstance(
        exc, ConnectionError | TimeoutError
    )
