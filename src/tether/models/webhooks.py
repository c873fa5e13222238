"""Webhook subscriptions and their deliveries, as plain records (docs/webhooks.md).

A subscription sends the events it selects (types from `EVENT_CATALOGUE`, optionally
only of some workflows, or only of one task) to a URL, signed per Standard Webhooks with
its own secret. Each (subscription, event) pair is one delivery: a row of the outbox
with its status, attempts and last outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

ALL_EVENTS = "*"
"""An `event_types` entry that selects every type of the catalogue."""

TERMINAL_EVENTS = ("task.succeeded", "task.failed", "task.cancelled")
"""What a task's `callback_url` subscribes to unless told otherwise: its end."""


class SubscriptionStatus(StrEnum):
    """Whether a subscription gets deliveries."""

    ACTIVE = "active"
    DISABLED = "disabled"
    """By an operator, by a 410 Gone, or after too many deliveries failed for good."""


class DeliveryStatus(StrEnum):
    """Where one delivery is in its life."""

    PENDING = "pending"
    """Waiting for its next attempt (`next_attempt_at`)."""
    DELIVERING = "delivering"
    """Claimed by a dispatcher, under a lease; an expired lease makes it due again."""
    DELIVERED = "delivered"
    """The receiver answered 2xx."""
    FAILED = "failed"
    """Gave up: the retry schedule ran out, the receiver answered 410, or the
    subscription was disabled. `retry` or `replay` sends it again."""


@dataclass
class WebhookSubscription:
    """Where a tenant's events go, and the secret that signs them."""

    id: str
    tenant: str
    url: str
    event_types: list[str]
    secret: str = field(repr=False)
    """`whsec_...`: signs every delivery; shown once, at creation or rotation."""
    workflows: list[str] | None = None
    """Only events of tasks of these workflows (None: every workflow)."""
    task_id: str | None = None
    """Only events of this task (a task's `callback_url`)."""
    description: str | None = None
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    previous_secret: str | None = field(default=None, repr=False)
    """The secret before the last rotation, also signing until `previous_secret_until`."""
    previous_secret_until: float | None = None
    disabled_reason: str | None = None
    disabled_at: float | None = None
    consecutive_failures: int = 0
    """Deliveries in a row that failed for good (any success resets it)."""
    created_at: float = 0.0
    updated_at: float = 0.0
    created_by: str | None = None

    def selects(self, event_type: str, workflow: str | None, task_id: str) -> bool:
        """Whether an event of this type, of a task of `workflow`, is for this subscription."""
        if self.task_id is not None and self.task_id != task_id:
            return False
        if ALL_EVENTS not in self.event_types and event_type not in self.event_types:
            return False
        return self.workflows is None or workflow in self.workflows

    def signing_secrets(self, now: float) -> list[str]:
        """The secrets that sign a delivery sent now: the current one, and the previous
        one while its overlap window lasts."""
        secrets = [self.secret]
        if self.previous_secret and (self.previous_secret_until or 0.0) > now:
            secrets.append(self.previous_secret)
        return secrets


@dataclass
class WebhookDelivery:
    """One event for one subscription: a row of the outbox."""

    id: str
    subscription_id: str
    tenant: str
    event_id: int
    task_id: str
    event_type: str
    webhook_id: str
    """The `webhook-id` header: the same on every attempt and replay of this delivery."""
    status: DeliveryStatus
    attempts: int
    next_attempt_at: float
    created_at: float
    updated_at: float
    body: str = field(default="", repr=False)
    """The JSON body sent, identical on every attempt."""
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None


@dataclass
class DeliveryFilter:
    """What `list_deliveries` returns: a tenant's deliveries, newest first."""

    tenant: str
    subscription_id: str | None = None
    status: list[DeliveryStatus] | None = None
    task_id: str | None = None
    before_id: str | None = None
    """Paging: only deliveries older than this id."""
    limit: int = 50


@dataclass
class Replayed:
    """What a replay did: deliveries sent again, new ones made, and where it stopped."""

    reset: int
    created: int
    last_event_id: int
    more: bool
    """True when the page limit stopped it: replay again after `last_event_id`."""
