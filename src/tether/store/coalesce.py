"""Group commit for intake: concurrent submits share one transaction.

An API node answers many small submits at once (one task each). Committed one by one,
each pays a transaction of its own: on SQLite a write-lock hand-over and an fsync, on
PostgreSQL a round trip and a WAL flush. While one submit's transaction is in flight,
the submits that arrive queue here; when it ends, all of them are written in the next
transaction together, and each caller gets its own tasks' results. Under no load a
submit goes alone, at once (no timer, no added latency); under load the groups grow by
themselves to what arrived during one commit.

A group that fails (an idempotency conflict in one of its submits, say) is run again
submit by submit, so every caller gets its own outcome and no caller's error is
another's. Submits that name the same idempotency key are never grouped: each must
see the other's committed task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tether.store.base import NewTask, Submitted

Write = Callable[[list[NewTask], float], Awaitable[list[Submitted]]]

MAX_GROUP = 1000  # tasks per transaction: a bound on a transaction's size and lock time


class SubmitCoalescer:
    """Writes submits through `write`, grouping the ones that arrive while it is busy."""

    def __init__(self, write: Write) -> None:
        self._write = write
        self._queue: list[tuple[list[NewTask], float, asyncio.Future[list[Submitted]]]] = []
        self._drain: asyncio.Task[None] | None = None

    async def submit(self, tasks: list[NewTask], now: float) -> list[Submitted]:
        """Store `tasks` (in one transaction, perhaps with other callers' tasks)."""
        fut: asyncio.Future[list[Submitted]] = asyncio.get_running_loop().create_future()
        self._queue.append((tasks, now, fut))
        if self._drain is None:
            self._drain = asyncio.create_task(self._drain_queue())
        return await fut

    async def _drain_queue(self) -> None:
        try:
            while self._queue:
                group: list[tuple[list[NewTask], float, asyncio.Future[list[Submitted]]]] = []
                size, keys = 0, set[tuple[str, str | None]]()
                for item in self._queue:
                    named = {(t.tenant, t.idempotency_key) for t in item[0] if t.idempotency_key}
                    if group and (size + len(item[0]) > MAX_GROUP or named & keys):
                        break
                    group.append(item)
                    size += len(item[0])
                    keys |= named
                del self._queue[: len(group)]
                await self._write_group(group)
        finally:
            self._drain = None

    async def _write_group(
        self, group: list[tuple[list[NewTask], float, asyncio.Future[list[Submitted]]]]
    ) -> None:
        if len(group) > 1:
            combined = [t for tasks, _, _ in group for t in tasks]
            try:
                # The latest arrival's time for all: no task is dated before its request.
                done = await self._write(combined, max(now for _, now, _ in group))
            except Exception:
                pass  # each submit again on its own, for its own outcome
            else:
                start = 0
                for tasks, _, fut in group:
                    if not fut.done():
                        fut.set_result(done[start : start + len(tasks)])
                    start += len(tasks)
                return
        for tasks, now, fut in group:
            try:
                result = await self._write(tasks, now)
            except BaseException as exc:  # handed to its caller, who raises it
                if not fut.done():
                    fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                if not fut.done():
                    fut.set_result(result)
