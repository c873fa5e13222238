"""The notification part of the store interface: the fan-out cursor over the events
feed and the outbox of notifications, leased by the workers that send them (ADR 69).

Nothing here is on a task's path: the fan-out reads the events feed after its cursor
and stores what the routes call for, moving the cursor in the same transaction.
"""

from __future__ import annotations

import abc

from tether.models import NotificationRecord


class NotificationStore(abc.ABC):
    """The notification outbox's operations (a part of `Store`)."""

    @abc.abstractmethod
    async def notify_position(self, cursor: str, now: float) -> int:
        """Where the notification fan-out `cursor` stands in the events feed (a new
        cursor starts at the feed's head)."""

    @abc.abstractmethod
    async def advance_notify_cursor(
        self,
        cursor: str,
        seen: int,
        position: int,
        records: list[NotificationRecord],
        now: float,
    ) -> bool:
        """In one transaction, move `cursor` from `seen` to `position` and store the
        notifications the events in between called for (one per event and channel);
        False, with nothing stored, when another fan-out moved it first."""

    @abc.abstractmethod
    async def claim_notifications(
        self, worker: str, limit: int, now: float, lease_until: float
    ) -> list[NotificationRecord]:
        """Lease up to `limit` due notifications to `worker`, counting an attempt each."""

    @abc.abstractmethod
    async def settle_notification(
        self,
        record: NotificationRecord,
        worker: str,
        status: str,
        error: str | None,
        next_at: float | None,
        now: float,
    ) -> bool:
        """Record a send's outcome: `sent`, `failed` (given up), or `pending` again at
        `next_at`. False when `worker` no longer holds that attempt's lease."""

    @abc.abstractmethod
    async def list_notifications(
        self, *, tenant: str | None = None, task_id: str | None = None, limit: int = 500
    ) -> list[NotificationRecord]:
        """Notifications oldest first."""

    @abc.abstractmethod
    async def add_notifications(self, records: list[NotificationRecord], now: float) -> None:
        """Store notifications that no event caused (a webhook subscription disabled);
        they are sent like the others."""
