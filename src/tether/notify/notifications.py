"""`Notifications`: an app's channels and routes, how it sends, and the notifier it
runs beside each worker; what `Tether.notifications` is."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tether.clock import Clock
from tether.config import Settings
from tether.errors import Permanent
from tether.ids import new_id
from tether.models import Notification, NotificationRecord
from tether.models.breakers import Breaker
from tether.models.dlq import DlqAction, DlqGroup
from tether.models.webhooks import WebhookSubscription
from tether.notify.channels import (
    CIRCUIT_OPENED_TRIGGER,
    DLQ_ESCALATED_TRIGGER,
    NOTIFY_TRIGGER,
    WEBHOOK_DISABLED_TRIGGER,
    NotificationBook,
)
from tether.notify.messages import (
    render_circuit_opened,
    render_dlq_escalated,
    render_webhook_disabled,
)
from tether.notify.notifier import Notifier, NotifierOptions
from tether.notify.senders import Senders
from tether.store.base import Store


class Notifications(NotificationBook):
    """The channels and routes of the settings (`[tether.notifications]`), to which
    `channel` and `route` add; the senders; and the notifier's `options`."""

    def __init__(self, settings: Settings) -> None:
        configured = NotificationBook.from_config(settings.notifications)
        super().__init__(configured.channels, configured.routes)
        self.senders = Senders.from_settings(settings)
        """How a notification goes out (the SMTP server, egress for HTTP)."""
        self.options = NotifierOptions(poll_interval=settings.poll_interval)
        """How the notifier beside each worker paces itself and retries sends."""
        self.console_url = settings.console_url

    def notifier(self, store: Store, clock: Clock, worker: str) -> Notifier | None:
        """The notifier to run beside `worker`, or None when no route names an event."""
        if not self.triggers - {NOTIFY_TRIGGER}:
            return None
        return Notifier(
            store,
            self,
            self.senders,
            clock,
            worker=worker,
            console_url=self.console_url,
            options=self.options,
        )

    async def send_now(
        self,
        tenant: str,
        workflow: str,
        notification: Notification,
        channels: Sequence[str] | None,
        key: str,
    ) -> list[str]:
        """Send `notification` at once on `channels` (None: those the routes give the
        `notify` trigger of `tenant`'s `workflow`), what `ctx.notify` does in its step;
        return the channels. Each send carries `key` (suffixed by the channel's name
        when there are several)."""
        names = (
            list(channels)
            if channels is not None
            else self.channels_for(NOTIFY_TRIGGER, tenant, workflow)
        )
        found = {n: self.channels.get(n) for n in names}
        missing = [n for n, c in found.items() if c is None]
        if missing:
            raise Permanent(f"no notification channel named {', '.join(map(repr, missing))}")
        await asyncio.gather(
            *(
                self.senders.send(c, notification, key if len(names) == 1 else f"{key}.{n}")
                for n, c in found.items()
                if c is not None
            )
        )
        return names

    async def webhook_disabled(self, store: Store, clock: Clock, sub: WebhookSubscription) -> None:
        """Tell the channels that routes give `webhook.disabled` for the subscription's
        tenant (through the outbox, like an event's notifications)."""
        channels = self.channels_for(WEBHOOK_DISABLED_TRIGGER, sub.tenant, "")
        if not channels:
            return
        message, now = render_webhook_disabled(sub), clock.now()
        records = [
            NotificationRecord(
                id=new_id(),
                tenant=sub.tenant,
                channel=name,
                trigger=WEBHOOK_DISABLED_TRIGGER,
                message=message,
                next_at=now,
                created_at=now,
            )
            for name in channels
        ]
        await store.add_notifications(records, now)

    def dlq_escalated(self, group: DlqGroup, action: DlqAction) -> list[NotificationRecord]:
        """The notifications an escalation of `group` calls for: one per channel that
        routes give `dlq.escalated` for its tenant. The caller stores them with the
        action, in its transaction."""
        channels = self.channels_for(DLQ_ESCALATED_TRIGGER, group.tenant, "")
        message = render_dlq_escalated(group, action, self.console_url)
        return [
            NotificationRecord(
                id=new_id(),
                tenant=group.tenant,
                channel=name,
                trigger=DLQ_ESCALATED_TRIGGER,
                message=message,
                next_at=action.at,
                created_at=action.at,
            )
            for name in channels
        ]

    def circuit_opened(self, breaker: Breaker) -> list[NotificationRecord]:
        """The notifications a breaker that just opened calls for: one per channel that
        routes give `circuit.opened` for its scope (a fleet-wide breaker: routes of no
        tenant). The store keeps them in the transaction that opened it."""
        channels = self.channels_for(CIRCUIT_OPENED_TRIGGER, breaker.tenant, "")
        if not channels:
            return []
        message, at = render_circuit_opened(breaker), breaker.updated_at
        return [
            NotificationRecord(
                id=new_id(),
                tenant=breaker.tenant,
                channel=name,
                trigger=CIRCUIT_OPENED_TRIGGER,
                message=message,
                next_at=at,
                created_at=at,
            )
            for name in channels
        ]
