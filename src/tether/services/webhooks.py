"""Webhook subscriptions and their deliveries: create, change, rotate, list, retry,
replay. The HTTP API (`/v1/webhooks`), the CLI (`tether webhooks`) and, through the
API, `tether.Client` call these; every operation is scoped to a tenant.

A URL is checked by the egress guard before anything is stored (`EgressRefused`), and
checked again when each delivery connects (docs/webhooks.md, ADR 68).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tether import egress, storable
from tether.errors import InvalidWebhook
from tether.ids import new_id
from tether.models import EVENT_CATALOGUE
from tether.models.webhooks import (
    ALL_EVENTS,
    DeliveryFilter,
    Replayed,
    SubscriptionStatus,
    WebhookDelivery,
    WebhookSubscription,
)
from tether.webhooks import fanout
from tether.webhooks.signing import new_secret

if TYPE_CHECKING:
    from tether.app import Tether

REPLAY_LIMIT = 10_000
"""Events one replay call goes through at most (`Replayed.more` says to call again)."""


def event_types(values: Sequence[str]) -> list[str]:
    """Validated, de-duplicated event types: names from the catalogue, or `*`."""
    if not values:
        raise InvalidWebhook("event_types", "name at least one event type (or '*' for all)")
    out: list[str] = []
    for value in values:
        if value != ALL_EVENTS and value not in {str(t) for t in EVENT_CATALOGUE}:
            known = ", ".join(str(t) for t in EVENT_CATALOGUE)
            raise InvalidWebhook(
                "event_types", f"unknown event type {value!r} (known: {known}, or '*')"
            )
        if value not in out:
            out.append(value)
    return out


def _workflows(values: Sequence[str] | None) -> list[str] | None:
    if values is None:
        return None
    storable.check(list(values), "workflows")
    names = [v for v in dict.fromkeys(values) if v]
    if not names:
        raise InvalidWebhook("workflows", "give at least one workflow, or none to mean all")
    return names


async def create(
    app: Tether,
    tenant: str,
    url: str,
    types: Sequence[str],
    *,
    workflows: Sequence[str] | None = None,
    task_id: str | None = None,
    description: str | None = None,
    created_by: str | None = None,
) -> WebhookSubscription:
    """A new subscription; its `secret` is in the returned record and nowhere else
    the API shows it again. Raises `EgressRefused`, `InvalidWebhook`, `NotStorable`,
    `TaskNotFound`."""
    storable.check_text(description, "description")
    chosen = event_types(types)
    only = _workflows(workflows)
    checked = await egress.check_url(url, app.egress_policy)
    await app.open()
    if task_id is not None:
        await app.get(task_id, tenant=tenant)  # TaskNotFound for another tenant's
    now = app.clock.now()
    sub = WebhookSubscription(
        id=new_id(),
        tenant=tenant,
        url=checked,
        event_types=chosen,
        secret=new_secret(),
        workflows=only,
        task_id=task_id,
        description=description,
        created_at=now,
        updated_at=now,
        created_by=created_by,
    )
    await app.store.create_subscription(sub)
    return sub


async def get(app: Tether, subscription_id: str, tenant: str | None) -> WebhookSubscription | None:
    """A subscription, or None (also another tenant's)."""
    await app.open()
    return await app.store.get_subscription(subscription_id, tenant)


async def list_(
    app: Tether,
    tenant: str,
    *,
    task_id: str | None = None,
    before_id: str | None = None,
    limit: int = 50,
) -> list[WebhookSubscription]:
    """A tenant's subscriptions, newest first."""
    await app.open()
    return await app.store.list_subscriptions(
        tenant, task_id=task_id, before_id=before_id, limit=limit
    )


UNSET: Any = object()


async def update(
    app: Tether,
    subscription_id: str,
    tenant: str | None,
    *,
    url: str | None = None,
    types: Sequence[str] | None = None,
    workflows: Sequence[str] | None = UNSET,
    description: str | None = UNSET,
    enabled: bool | None = None,
) -> WebhookSubscription | None:
    """Change what a subscription selects or where it sends; enable or disable it.
    Disabling fails its pending deliveries; enabling clears its failure count."""
    changes: dict[str, Any] = {}
    if url is not None:
        changes["url"] = await egress.check_url(url, app.egress_policy)
    if types is not None:
        changes["event_types"] = event_types(types)
    if workflows is not UNSET:
        changes["workflows"] = _workflows(workflows)
    if description is not UNSET:
        storable.check_text(description, "description")
        changes["description"] = description
    if enabled is not None:
        changes["status"] = SubscriptionStatus.ACTIVE if enabled else SubscriptionStatus.DISABLED
    await app.open()
    if not changes:
        return await app.store.get_subscription(subscription_id, tenant)
    return await app.store.update_subscription(subscription_id, tenant, changes, app.clock.now())


async def rotate_secret(
    app: Tether, subscription_id: str, tenant: str | None, overlap: float | None = None
) -> WebhookSubscription | None:
    """A new secret for the subscription (in the returned record); the old one keeps
    signing too for `overlap` seconds (default `webhook_secret_overlap`), so receivers
    can switch without missing a delivery."""
    await app.open()
    current = await app.store.get_subscription(subscription_id, tenant)
    if current is None:
        return None
    window = app.settings.webhook_secret_overlap if overlap is None else max(0.0, overlap)
    now = app.clock.now()
    return await app.store.update_subscription(
        subscription_id,
        tenant,
        {
            "secret": new_secret(),
            "previous_secret": current.secret if window > 0 else None,
            "previous_secret_until": now + window if window > 0 else None,
        },
        now,
    )


async def delete(app: Tether, subscription_id: str, tenant: str | None) -> bool:
    """Delete a subscription and its deliveries; False when there is none."""
    await app.open()
    return await app.store.delete_subscription(subscription_id, tenant)


async def deliveries(app: Tether, flt: DeliveryFilter) -> list[WebhookDelivery]:
    """Deliveries newest first, by subscription, status or task."""
    await app.open()
    return await app.store.list_deliveries(flt)


async def delivery(app: Tether, delivery_id: str, tenant: str | None) -> WebhookDelivery | None:
    """One delivery, or None (also another tenant's)."""
    await app.open()
    return await app.store.get_delivery(delivery_id, tenant)


async def retry(app: Tether, delivery_id: str, tenant: str | None) -> WebhookDelivery | None:
    """Send a delivery again now, with a fresh schedule and the same `webhook-id`.
    Raises `InvalidTransition` while it is being delivered or its subscription is off."""
    await app.open()
    return await app.store.retry_delivery(delivery_id, tenant, app.clock.now())


async def replay(
    app: Tether,
    subscription_id: str,
    tenant: str | None,
    *,
    since: float | None = None,
    after_event: int | None = None,
    limit: int = REPLAY_LIMIT,
) -> Replayed | None:
    """Send again the subscription's events at or after `since` (epoch seconds) and/or
    after event id `after_event`, whatever their deliveries' status; missing
    deliveries (events from before the subscription, say) are made. The same
    `webhook-id`s as before. None when there is no such subscription."""
    if since is None and after_event is None:
        raise InvalidWebhook("since", "give a time (since) or an event id (after_event)")
    await app.open()
    return await app.store.replay(
        subscription_id,
        tenant,
        fanout.plan,
        after_event=after_event or 0,
        since=since,
        limit=limit,
        now=app.clock.now(),
    )


__all__ = [
    "REPLAY_LIMIT",
    "create",
    "delete",
    "deliveries",
    "delivery",
    "event_types",
    "get",
    "list_",
    "replay",
    "retry",
    "rotate_secret",
    "update",
]
