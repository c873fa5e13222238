"""`SQLOutbox`: the webhook operations of the SQL stores (`OutboxStore`), mapped onto
the shared logic in `tether.store.sql.webhooks`."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tether.models.webhooks import DeliveryFilter, Replayed, WebhookDelivery, WebhookSubscription
from tether.store.hub import Hub
from tether.store.outbox import (
    ClaimedDelivery,
    DeliveryOutcome,
    FanOutResult,
    OutboxStore,
    Plan,
)
from tether.store.sql import Conn, Dialect
from tether.store.sql import deliveries as sqld
from tether.store.sql import webhooks as sqlw

T = TypeVar("T")


class SQLOutbox(OutboxStore, abc.ABC):
    """Webhook operations over `_run` (one transaction each)."""

    dialect: Dialect
    hub: Hub

    @abc.abstractmethod
    async def _run(self, work: Callable[[Conn], Awaitable[T]], *, write: bool = True) -> T:
        """Run `work` in a transaction of its own (`SQLStore._run`)."""

    async def create_subscription(self, sub: WebhookSubscription) -> None:
        await self._run(lambda c: sqlw.create_subscription(c, sub))
        self.hub.notify_subscriptions()

    async def get_subscription(
        self, subscription_id: str, tenant: str | None
    ) -> WebhookSubscription | None:
        sub: WebhookSubscription | None = await self._run(
            lambda c: sqlw.get_subscription(c, subscription_id, tenant), write=False
        )
        return sub

    async def list_subscriptions(
        self,
        tenant: str,
        *,
        task_id: str | None = None,
        before_id: str | None = None,
        limit: int = 50,
    ) -> list[WebhookSubscription]:
        subs: list[WebhookSubscription] = await self._run(
            lambda c: sqlw.list_subscriptions(c, tenant, task_id, before_id, limit), write=False
        )
        return subs

    async def update_subscription(
        self, subscription_id: str, tenant: str | None, changes: dict[str, Any], now: float
    ) -> WebhookSubscription | None:
        sub: WebhookSubscription | None = await self._run(
            lambda c: sqlw.update_subscription(c, subscription_id, tenant, changes, now)
        )
        self.hub.notify_subscriptions()
        return sub

    async def delete_subscription(self, subscription_id: str, tenant: str | None) -> bool:
        done: bool = await self._run(lambda c: sqlw.delete_subscription(c, subscription_id, tenant))
        return done

    async def fan_out(self, plan: Plan, limit: int, now: float) -> FanOutResult:
        d = self.dialect
        result: FanOutResult = await self._run(lambda c: sqlw.fan_out(c, d, plan, limit, now))
        if result.deliveries:
            self.hub.notify_deliveries()
        return result

    async def claim_deliveries(
        self, owner: str, limit: int, now: float, lease_until: float
    ) -> list[ClaimedDelivery]:
        d = self.dialect
        claimed: list[ClaimedDelivery] = await self._run(
            lambda c: sqld.claim_deliveries(c, d, owner, limit, now, lease_until)
        )
        return claimed

    async def record_deliveries(
        self, owner: str, outcomes: list[DeliveryOutcome], now: float, disable_after: int
    ) -> list[WebhookSubscription]:
        d = self.dialect
        disabled: list[WebhookSubscription] = await self._run(
            lambda c: sqld.record_deliveries(c, d, owner, outcomes, now, disable_after)
        )
        return disabled

    async def list_deliveries(self, flt: DeliveryFilter) -> list[WebhookDelivery]:
        d = self.dialect
        found: list[WebhookDelivery] = await self._run(
            lambda c: sqld.list_deliveries(c, d, flt), write=False
        )
        return found

    async def get_delivery(self, delivery_id: str, tenant: str | None) -> WebhookDelivery | None:
        found: WebhookDelivery | None = await self._run(
            lambda c: sqld.get_delivery(c, delivery_id, tenant), write=False
        )
        return found

    async def retry_delivery(
        self, delivery_id: str, tenant: str | None, now: float
    ) -> WebhookDelivery | None:
        found: WebhookDelivery | None = await self._run(
            lambda c: sqld.retry_delivery(c, delivery_id, tenant, now)
        )
        if found is not None:
            self.hub.notify_deliveries()
        return found

    async def replay(
        self,
        subscription_id: str,
        tenant: str | None,
        plan: Plan,
        *,
        after_event: int,
        since: float | None,
        limit: int,
        now: float,
    ) -> Replayed | None:
        d = self.dialect
        done: Replayed | None = await self._run(
            lambda c: sqld.replay(
                c,
                d,
                subscription_id,
                tenant,
                plan,
                after_event=after_event,
                since=since,
                limit=limit,
                now=now,
            )
        )
        if done is not None and (done.reset or done.created):
            self.hub.notify_deliveries()
        return done
