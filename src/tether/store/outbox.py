"""The webhook part of the store interface: subscriptions, the delivery outbox, and the
fan-out that fills it from the events feed (ADR 67).

Nothing here is on a task's path: tasks and events are written exactly as without
webhooks, and a fan-out reads the events feed after its stored cursor, inserting the
deliveries of matching subscriptions and advancing the cursor in one transaction.
Deliveries are claimed with leases, like tasks; a claim never takes a delivery while
an older one of the same (subscription, task) is still open, so one task's events
reach a subscriber in event order.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tether.models import Event
from tether.models.webhooks import (
    DeliveryFilter,
    Replayed,
    WebhookDelivery,
    WebhookSubscription,
)

TaskSummary = Mapping[str, Any]
"""A task's identity and state, without its input or result (`SUMMARY_COLUMNS`)."""

SUMMARY_COLUMNS = (
    "id",
    "tenant",
    "workflow",
    "workflow_version",
    "queue",
    "priority",
    "status",
    "wait_reason",
    "correlation_id",
    "attempt",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "forked_from",
)


@dataclass
class NewDelivery:
    """A delivery to insert: one event for one subscription, its body already built."""

    id: str
    subscription_id: str
    tenant: str
    event_id: int
    task_id: str
    event_type: str
    webhook_id: str
    body: str


Plan = Callable[
    [list[Event], Mapping[str, TaskSummary], list[WebhookSubscription], float],
    list[NewDelivery],
]
"""What the fan-out inserts for a page of events: `plan(events, tasks, subscriptions,
now)`, a pure function (it runs inside the store's transaction)."""


@dataclass
class FanOutResult:
    """What one fan-out pass did."""

    events: int
    """Events read past the cursor (0: nothing new, or another fan-out won the race)."""
    deliveries: int
    cursor: int
    subscribed: bool = True
    """Whether any active subscription exists (False: the pass only moved the cursor)."""


@dataclass
class ClaimedDelivery:
    """A delivery a dispatcher now holds, with where it goes and what signs it."""

    delivery: WebhookDelivery
    url: str
    secrets: list[str] = field(repr=False)


@dataclass
class DeliveryOutcome:
    """The result of one attempt, fenced by the attempt number it was claimed with."""

    delivery_id: str
    subscription_id: str
    task_id: str
    event_id: int
    attempts: int
    delivered: bool
    status_code: int | None = None
    error: str | None = None
    retry_at: float | None = None
    """When to try again; None on a failure means it failed for good."""
    gone: bool = False
    """The receiver answered 410 Gone: the subscription is disabled."""


class OutboxStore(abc.ABC):
    """Webhook operations of a `Store` (it inherits them)."""

    # subscriptions -------------------------------------------------------------------
    @abc.abstractmethod
    async def create_subscription(self, sub: WebhookSubscription) -> None:
        """Store a new subscription."""

    @abc.abstractmethod
    async def get_subscription(
        self, subscription_id: str, tenant: str | None
    ) -> WebhookSubscription | None:
        """A subscription by id, or None (also another tenant's)."""

    @abc.abstractmethod
    async def list_subscriptions(
        self,
        tenant: str,
        *,
        task_id: str | None = None,
        before_id: str | None = None,
        limit: int = 50,
    ) -> list[WebhookSubscription]:
        """A tenant's subscriptions, newest first (of one task, with `task_id`)."""

    @abc.abstractmethod
    async def update_subscription(
        self, subscription_id: str, tenant: str | None, changes: dict[str, Any], now: float
    ) -> WebhookSubscription | None:
        """Change fields (`url`, `event_types`, `workflows`, `description`, `status`,
        `secret`, `previous_secret`, `previous_secret_until`, `disabled_reason`).
        Disabling fails its pending deliveries; enabling clears the failure count.
        None when there is no such subscription."""

    @abc.abstractmethod
    async def delete_subscription(self, subscription_id: str, tenant: str | None) -> bool:
        """Delete a subscription and its deliveries; False when there is none."""

    # the outbox ----------------------------------------------------------------------
    @abc.abstractmethod
    async def fan_out(self, plan: Plan, limit: int, now: float) -> FanOutResult:
        """Read up to `limit` events after the cursor (in the feed's commit-safe order,
        ADR 13), insert the deliveries `plan` makes of them and advance the cursor, in
        one transaction. Concurrent fan-outs race on the cursor; the loser does nothing."""

    @abc.abstractmethod
    async def claim_deliveries(
        self, owner: str, limit: int, now: float, lease_until: float
    ) -> list[ClaimedDelivery]:
        """Take up to `limit` due deliveries (pending and due, or leased and expired)
        whose (subscription, task) has no older open delivery; each claim counts an
        attempt."""

    @abc.abstractmethod
    async def record_deliveries(
        self, owner: str, outcomes: list[DeliveryOutcome], now: float, disable_after: int
    ) -> list[WebhookSubscription]:
        """Apply attempt outcomes still held by `owner` (others were fenced off).
        Returns the subscriptions this disabled (410, or `disable_after` deliveries in a
        row failed for good)."""

    # replay --------------------------------------------------------------------------
    @abc.abstractmethod
    async def list_deliveries(self, flt: DeliveryFilter) -> list[WebhookDelivery]:
        """Deliveries newest first."""

    @abc.abstractmethod
    async def get_delivery(self, delivery_id: str, tenant: str | None) -> WebhookDelivery | None:
        """A delivery by id, or None (also another tenant's)."""

    @abc.abstractmethod
    async def retry_delivery(
        self, delivery_id: str, tenant: str | None, now: float
    ) -> WebhookDelivery | None:
        """Make a delivery due now with a fresh schedule (any status but `delivering`).
        None when there is none; `InvalidTransition` while it is being delivered or its
        subscription is disabled."""

    @abc.abstractmethod
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
        """Send again, from now, the subscription's events after `after_event` (and at
        or after `since`): their deliveries are reset to pending with a fresh schedule,
        and missing ones are made with `plan`. At most `limit` events per call; None
        when there is no such subscription, `InvalidTransition` when it is disabled."""
