"""Follow one task until it ends: the single loop behind `TaskHandle.wait`, the SSE
event stream, `tether watch` and `tether demo` (ADR 60).

Each round subscribes to the store hub's task-change future *before* reading, so a
change committed between the read and the wait is not missed; reads the task (and,
when following events, every event after the cursor); yields what it read; then waits
for the hub or, as the fallback for changes the hub cannot see (a worker in another
process on SQLite, steps, which do not notify), for the poll interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from tether.clock import Clock
from tether.errors import TaskNotFound
from tether.models import Event, Task
from tether.store.base import Store, events_complete, is_final_event
from tether.store.hub import TaskChange

PAGE = 500
"""Events read per query while catching up."""


@dataclass
class Update:
    """One round of following a task."""

    task: Task
    """The task as read this round (before `events`, so a terminal status here and a
    final event among the events read so far mean nothing more can come)."""
    events: list[Event] = field(default_factory=list)
    """Events after the cursor, oldest first (always empty when not following events)."""
    cursor: int | None = None
    """Id of the last event read so far (resume with `after=cursor`); None without events."""
    ended: bool = False
    """The task has ended (and, when following events, its last event has been read):
    this is the last update."""
    change: TaskChange | None = None
    """On the last update, the end as announced by this process's own commit when it was
    taken from the hub instead of being read again (then `task` is the earlier read)."""


async def follow_task(
    store: Store,
    clock: Clock,
    task_id: str,
    tenant: str | None,
    *,
    after: int | None = None,
    poll: float = 0.25,
    poll_max: float | None = None,
    timeout: float | None = None,
) -> AsyncGenerator[Update, None]:
    """Yield an `Update` per round until the task ends; the last one has `ended`.

    With `after` (an event id, 0 for all) the task's events after it are read too, and
    the end is when `events_complete` says so; without it the end is the terminal
    status, taken from the hub's announcement when this process committed it. Between
    rounds it waits for the hub or `poll` seconds, doubling up to `poll_max` (default:
    no doubling). Raises `TaskNotFound` when the task is (or becomes) missing and
    `TimeoutError` after `timeout` seconds. Close it (`contextlib.aclosing`) when
    leaving early, so its subscription is dropped at once.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    longest = poll if poll_max is None else poll_max
    cursor, saw_final = after, False
    while True:
        fut = store.hub.wait_task(task_id)
        try:
            task = await store.get_task(task_id, tenant)
            if task is None:
                raise TaskNotFound(task_id)
            events: list[Event] = []
            if cursor is not None:
                while True:
                    page = await store.list_events(
                        tenant=tenant, task_id=task_id, after=cursor, limit=PAGE
                    )
                    events.extend(page)
                    if page:
                        cursor = page[-1].id
                        saw_final = saw_final or any(is_final_event(e) for e in page)
                    if len(page) < PAGE:
                        break
                ended = events_complete(task, saw_final, clock.now())
            else:
                ended = task.status.terminal
            yield Update(task, events, cursor, ended)
            if ended:
                return
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"task {task_id} did not finish in {timeout}s")
            await asyncio.wait({fut}, timeout=poll if remaining is None else min(poll, remaining))
            poll = min(poll * 2, longest)
            if cursor is None and fut.done() and not fut.cancelled() and fut.result().ended:
                # This process committed the end: its outcome came with the news, so
                # many waiters need not queue reads behind the workers' writes.
                yield Update(task, [], None, True, fut.result())
                return
        finally:
            store.hub.forget(task_id, fut)
