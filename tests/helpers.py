"""Waiting helpers shared by the engine tests: conditions with deadlines, never sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tether import Event, TaskStatus, Tether


async def wait_status(app: Tether, task_id: str, status: TaskStatus, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        task = await app.get(task_id)
        if task.status == status:
            return
        if task.status.terminal or loop.time() > end:
            raise AssertionError(f"task is {task.status} ({task.error}), expected {status}")
        await asyncio.sleep(0.01)


async def event_where(app: Tether, task_id: str, match: Callable[[Event], bool]) -> Event:
    """The task's first event that matches, waiting for it: on PostgreSQL an event can be
    held back briefly while older transactions are still open (ADR 13)."""
    for _ in range(200):  # up to 10 s
        found = [e for e in await app.store.list_events(task_id=task_id) if match(e)]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no matching event for task {task_id}")


async def events_through(app: Tether, task_id: str, last: str) -> list[Event]:
    """The task's events, read once its first event of type `last` is visible (on
    PostgreSQL the newest ones can be held back for a moment, ADR 13)."""
    await event_where(app, task_id, lambda e: e.type == last)
    return await app.store.list_events(task_id=task_id)
