"""In-process notifications, so a worker or waiter reacts at once instead of polling.

Each store publishes here after it commits a change in this process; the PostgreSQL
store also republishes what other processes announce with NOTIFY. Waiters always keep
a polling fallback, so a missed notification costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether.models import TaskError


@dataclass(frozen=True)
class TaskChange:
    """A committed change of one task, as announced to its waiters.

    `ended` is True when this process committed the task's end itself, and then
    `result` (JSON text) and `error` are its outcome: a waiter that only wants the
    outcome need not read the task again (many waiters would queue those reads behind
    the workers' writes)."""

    status: str
    ended: bool = False
    result: str | None = None
    error: TaskError | None = None


class Hub:
    """Wake-ups for new work per queue and for changes of individual tasks."""

    def __init__(self) -> None:
        self._work: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._tasks: dict[str, list[asyncio.Future[TaskChange]]] = defaultdict(list)
        self._seen: dict[str, float] = {}
        """Per watched task, the `updated_at` of the row its waiters last read."""
        self.events_written = asyncio.Event()
        """Set when events were committed here (or another process said it wrote some):
        the webhook fan-out's wake-up. Whoever waits on it clears it."""
        self.deliveries_due = asyncio.Event()
        """Set when webhook deliveries became due here (fan-out, retry, replay)."""
        self.subscriptions_changed = asyncio.Event()
        """Set when a webhook subscription was created or changed here."""
        self.schedules_changed = asyncio.Event()
        """Set when a schedule was created, changed or deleted here: the scheduler's
        wake-up (it polls for other processes' changes)."""

    def notify_events(self) -> None:
        self.events_written.set()

    def notify_deliveries(self) -> None:
        self.deliveries_due.set()

    def notify_subscriptions(self) -> None:
        self.subscriptions_changed.set()
        self.events_written.set()

    def notify_schedules(self) -> None:
        self.schedules_changed.set()

    def work_event(self, queue: str) -> asyncio.Event:
        """The event set when `queue` may have runnable work; clear it before claiming."""
        return self._work[queue]

    def notify_work(self, queue: str) -> None:
        self._work[queue].set()

    def notify_all_work(self) -> None:
        for event in self._work.values():
            event.set()

    def task_changed(self, task_id: str, change: TaskChange | str) -> None:
        """Resolve everyone waiting for a change of `task_id` (a bare new status, or a
        `TaskChange` with more to say)."""
        waiters = self._tasks.pop(task_id, None)
        self._seen.pop(task_id, None)
        if not waiters:
            return
        if isinstance(change, str):
            change = TaskChange(change)
        for fut in waiters:
            if not fut.done():
                fut.set_result(change)

    def wait_task(self, task_id: str) -> asyncio.Future[TaskChange]:
        """A future resolved at the task's next change."""
        fut: asyncio.Future[TaskChange] = asyncio.get_running_loop().create_future()
        self._tasks[task_id].append(fut)
        return fut

    def watched(self) -> list[str]:
        """The tasks someone in this process waits on."""
        return list(self._tasks)

    def saw(self, task_id: str, updated_at: float) -> None:
        """A read found watched `task_id` as last updated at `updated_at`. The first such
        read since its waiters last woke is kept: a later read (by anyone) of a newer row
        must not hide that row from the waiters still holding the older one."""
        if task_id in self._tasks:
            self._seen.setdefault(task_id, updated_at)

    def is_news(self, task_id: str, updated_at: float) -> bool:
        """Whether a row of `task_id` updated at `updated_at` differs from what its
        waiters read: a refresh that finds the same row again must not wake them."""
        return self._seen.get(task_id) != updated_at

    def forget(self, task_id: str, fut: asyncio.Future[TaskChange]) -> None:
        waiters = self._tasks.get(task_id)
        if waiters and fut in waiters:
            waiters.remove(fut)
            if not waiters:
                del self._tasks[task_id]
                self._seen.pop(task_id, None)
