"""`TaskHandle`: a submitted task, and ways to follow it to its end."""

from __future__ import annotations

from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from tether import serde
from tether.errors import TaskCancelledError, TaskFailedError
from tether.follow import follow_task
from tether.models import Task, TaskStatus
from tether.models.webhooks import WebhookSubscription
from tether.store.hub import TaskChange

if TYPE_CHECKING:  # tether.app imports this module
    from tether.app import Tether

WAIT_POLL_FIRST = 0.25
"""Seconds before `TaskHandle.wait` first re-reads the task without a notification."""
WAIT_POLL_MAX = 2.0
"""Longest interval between those re-reads (the interval doubles up to it)."""


class TaskHandle:
    """A submitted task: its id, and ways to follow it."""

    def __init__(
        self,
        app: Tether,
        task: Task,
        created: bool = True,
        callback: WebhookSubscription | None = None,
    ) -> None:
        self.app = app
        self.id = task.id
        self.tenant = task.tenant
        self.created = created
        """False when the idempotency key matched an existing task."""
        self.initial = task
        self.callback = callback
        """The task's webhook subscription when submitted with `callback_url`; its
        `secret` verifies the signatures (docs/webhooks.md)."""

    def __repr__(self) -> str:
        return f"TaskHandle({self.id!r})"

    async def status(self) -> Task:
        """The task as stored now."""
        task = await self.app.get(self.id, tenant=self.tenant)
        return task

    async def wait(self, timeout: float | None = None) -> Task:
        """Wait until the task ends (any terminal state) and return it."""
        ended = await self._ended(timeout)
        if isinstance(ended, Task):
            return ended
        # The end was announced, not read: read the task it left behind.
        return await self.app.get(self.id, tenant=self.tenant)

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the task and return its result; raise `TaskFailedError` or
        `TaskCancelledError` when it did not succeed, `TimeoutError` after `timeout`."""
        ended = await self._ended(timeout)
        if isinstance(ended, Task):
            status, result, err = ended.status, ended.result, ended.error
        else:
            status, result, err = TaskStatus(ended.status), serde.loads(ended.result), ended.error
        if status == TaskStatus.SUCCEEDED:
            return result
        if status == TaskStatus.CANCELLED:
            raise TaskCancelledError(f"task {self.id} was cancelled")
        raise TaskFailedError(
            self.id,
            err.type if err else "Error",
            err.message if err else "failed",
            err.step if err else None,
        )

    async def _ended(self, timeout: float | None) -> Task | TaskChange:
        """The ended task as read, or the end announced by this process's own commit."""
        # A change committed in this process (or announced by PostgreSQL NOTIFY) wakes
        # the loop at once; polling is only the fallback (a worker in another process on
        # SQLite), so it starts late and backs off: polls of many waiters would otherwise
        # queue up behind the workers' writes on the database thread.
        rounds = follow_task(
            self.app.store,
            self.app.clock,
            self.id,
            self.tenant,
            poll=WAIT_POLL_FIRST,
            poll_max=WAIT_POLL_MAX,
            timeout=timeout,
        )
        async with aclosing(rounds):
            async for update in rounds:
                if update.ended:
                    return update.change if update.change is not None else update.task
        raise AssertionError("follow_task stops only after an ended update")
