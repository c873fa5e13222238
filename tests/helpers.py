"""Waiting helpers shared by the engine tests: conditions with deadlines, never sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

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


async def all_events(store: Any, task_id: str, timeout: float = 10) -> list[Event]:
    """Every committed event of the task, read once the SQL store (`app.store`) shows
    them all: on PostgreSQL the feed holds back events while older transactions on the
    server are still open (ADR 13), so wait until it returns as many as the table holds."""

    async def stored(conn: Any) -> int:
        row = await conn.fetchone("SELECT COUNT(*) AS n FROM events WHERE task_id = %s", (task_id,))
        return int(row["n"])

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        events = await store.list_events(task_id=task_id)
        committed = await store._run(stored, write=False)
        if len(events) >= committed:
            return events
        if loop.time() > end:
            raise AssertionError(f"{len(events)} of {committed} events of {task_id} visible")
        await asyncio.sleep(0.02)
