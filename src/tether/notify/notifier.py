"""The notifier: a loop beside each worker that turns events into notifications and
sends them, durably and off the hot path (ADR 69).

It runs as a companion of each worker (started and stopped with it).

- Fan-out: it reads the events feed after a stored cursor; for each event whose type
  some route announces it renders the message once per channel and stores those
  notifications, and moves the cursor, in one transaction (compare-and-set on the
  cursor: with a worker fleet one fan-out wins, the others read again).
- Delivery: it leases due notifications (like tasks), sends each on its channel, and
  records the outcome; a transient failure is retried with exponential backoff and
  jitter, up to `max_attempts`; a sender that dies mid-send loses nothing, its lease
  expires and another worker sends again (at least once, with the same Message-ID).

Nothing is written in the transactions of task changes: a task that fails costs what
it cost before, whether or not anyone is told.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from tether.clock import Clock
from tether.errors import Permanent, StoreUnavailable, Transient
from tether.ids import new_id
from tether.models import Approval, Event, EventType, NotificationRecord, Task
from tether.notify.channels import NotificationBook
from tether.notify.messages import render
from tether.notify.senders import Senders
from tether.retry import RetryPolicy
from tether.store.availability import failure_level
from tether.store.base import Store

log = logging.getLogger("tether.notify")

CURSOR = "notifications"
"""The name of the fan-out's cursor in `notify_cursors`."""

SEND_RETRY = RetryPolicy(
    max_attempts=10, initial_interval=5.0, max_interval=1800.0, backoff_coefficient=3.0
)
"""Attempts to send one notification: 5 s, 15 s, 45 s, ... capped at 30 min."""


@dataclass(frozen=True)
class NotifierOptions:
    """How the notifier paces itself."""

    poll_interval: float = 0.5
    """Seconds between looks at the feed and the outbox when both were empty."""
    batch: int = 200
    """Events read, and notifications leased, per round."""
    lease_ttl: float = 60.0
    """Seconds a sender holds a notification; longer than any send's timeouts."""
    retry: RetryPolicy = SEND_RETRY
    """Sends of one notification: 10 attempts over about 2 hours by default."""


class Notifier:
    """Fans events out into notifications and sends them, for one worker."""

    def __init__(
        self,
        store: Store,
        book: NotificationBook,
        senders: Senders,
        clock: Clock,
        *,
        worker: str,
        console_url: str | None,
        options: NotifierOptions | None = None,
    ) -> None:
        self.store = store
        self.book = book
        self.senders = senders
        self.clock = clock
        self.worker = worker
        self.console_url = console_url
        self.options = options or NotifierOptions()
        self._position: int | None = None
        self._loop: asyncio.Task[None] | None = None

    # a worker's companion (`tether.engine.worker.Companion`) ----------------------------
    async def start(self) -> None:
        """Run `run` in the background (a worker starts its companions with it)."""
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self.run(), name=f"tether-notifier-{self.worker}")

    async def stop(self) -> None:
        """Stop the loop; a send cut short is sent again once its lease expires."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None

    async def run(self) -> None:
        """Fan out and deliver until cancelled; errors are logged and retried."""
        backoff = self.options.poll_interval
        while True:
            try:
                busy = await self.fan_out() + await self.deliver()
                backoff = self.options.poll_interval
            except Exception as exc:  # the database is away: try again, more slowly
                level = failure_level(exc)
                log.log(level, "notifier round failed (%s); again in %.1fs", exc, backoff)
                if isinstance(exc, StoreUnavailable):  # or as soon as it is back
                    await asyncio.sleep(self.options.poll_interval / 4)
                    await self.store.availability.wait_reachable(backoff)
                else:
                    await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if not busy:
                await asyncio.sleep(self.options.poll_interval)

    # fan-out ----------------------------------------------------------------------------
    async def fan_out(self) -> int:
        """Look at the next events of the feed; return how many were looked at."""
        now = self.clock.now()
        if self._position is None:
            self._position = await self.store.notify_position(CURSOR, now)
        seen = self._position
        events = await self.store.list_events(after=seen, limit=self.options.batch)
        if not events:
            return 0
        triggers = self.book.triggers
        wanted = [e for e in events if e.type in triggers]
        records = [r for rs in await asyncio.gather(*map(self._records, wanted)) for r in rs]
        moved = await self.store.advance_notify_cursor(CURSOR, seen, events[-1].id, records, now)
        self._position = events[-1].id if moved else None
        return len(events)

    async def _records(self, event: Event) -> list[NotificationRecord]:
        task = await self.store.get_task(event.task_id)
        if task is None:  # purged meanwhile: nothing left to tell
            return []
        channels = self.book.channels_for(event.type, task.tenant, task.workflow)
        if not channels:
            return []
        message = render(event, task, await self._approval(event, task), self.console_url)
        now = self.clock.now()
        return [
            NotificationRecord(
                id=new_id(),
                tenant=task.tenant,
                channel=name,
                trigger=event.type,
                message=message,
                task_id=task.id,
                event_id=event.id,
                next_at=now,
                created_at=now,
            )
            for name in channels
        ]

    async def _approval(self, event: Event, task: Task) -> Approval | None:
        approval_id = (event.data or {}).get("approval_id")
        if event.type != EventType.APPROVAL_REQUESTED or not approval_id:
            return None
        return await self.store.get_approval(str(approval_id), task.tenant)

    # delivery ---------------------------------------------------------------------------
    async def deliver(self) -> int:
        """Send the notifications that are due; return how many were tried."""
        now = self.clock.now()
        claimed = await self.store.claim_notifications(
            self.worker, self.options.batch, now, now + self.options.lease_ttl
        )
        await asyncio.gather(*map(self._deliver, claimed))
        return len(claimed)

    async def _deliver(self, record: NotificationRecord) -> None:
        channel = self.book.channels.get(record.channel)
        status, error, next_at = "sent", None, None
        try:
            if channel is None:
                raise Permanent(f"no channel {record.channel!r} is configured")
            await self.senders.send(channel, record.message, record.id)
        except (Transient, Permanent) as exc:
            error = f"{type(exc).__name__}: {exc}"
            policy = self.options.retry
            if isinstance(exc, Transient) and record.attempts < policy.max_attempts:
                status = "pending"
                wait = exc.retry_after if exc.retry_after is not None else None
                next_at = self.clock.now() + (wait or policy.backoff(record.attempts))
            else:
                status = "failed"
            log.warning(
                "notification %s (%s on %s) attempt %d: %s",
                record.id,
                record.trigger,
                record.channel,
                record.attempts,
                error,
            )
        except Exception as exc:  # a bug, not the channel: give up on it, loudly
            # Only the type: a foreign exception's text or trace may quote an address.
            status, error = "failed", type(exc).__name__
            log.error("notification %s could not be sent: %s", record.id, error)
        await self.store.settle_notification(
            record, self.worker, status, error, next_at, self.clock.now()
        )
