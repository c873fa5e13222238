"""Time, behind an interface so that tests can move it by hand."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time in seconds since the epoch, and a way to wait for it."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Until `event` is set (True) or `timeout` seconds pass (False), for a loop that
    must stop when its task is cancelled. Not `asyncio.wait_for`, which can swallow a
    cancellation that arrives as the event fires; and on 3.11 `asyncio.timeout` can turn
    one that arrives as the timeout expires into a `TimeoutError`: a cancellation
    pending on the task is raised again instead of being taken for the timeout."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
            return True
    except TimeoutError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from None
        return False
