"""`Client.webhooks`: the webhook endpoints of the HTTP API, for `tether.Client`.

async with Client(url, token=TOKEN) as client:
    sub = await client.webhooks.create("https://hooks.example.com/t", ["task.failed"])
    print(sub.secret)                          # shown once: keep it to verify
    failed, _ = await client.webhooks.deliveries(status=["failed"])
    await client.webhooks.retry(failed[0].id)
    await client.webhooks.replay(sub.id, since=time.time() - 3600)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx
import orjson

from tether.models.webhooks import (
    DeliveryStatus,
    Replayed,
    SubscriptionStatus,
    WebhookDelivery,
    WebhookSubscription,
)

Request = Callable[..., Awaitable[httpx.Response]]
_KEEP: Any = object()


def subscription_from_json(data: Mapping[str, Any]) -> WebhookSubscription:
    """A `WebhookSubscription` from the API's JSON (`secret` is empty unless shown)."""
    return WebhookSubscription(
        id=data["id"],
        tenant=data.get("tenant", ""),
        url=data["url"],
        event_types=list(data["event_types"]),
        secret=data.get("secret", ""),
        workflows=data.get("workflows"),
        task_id=data.get("task_id"),
        description=data.get("description"),
        status=SubscriptionStatus(data["status"]),
        previous_secret_until=data.get("previous_secret_until"),
        disabled_reason=data.get("disabled_reason"),
        disabled_at=data.get("disabled_at"),
        consecutive_failures=data.get("consecutive_failures", 0),
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        created_by=data.get("created_by"),
    )


def delivery_from_json(data: Mapping[str, Any]) -> WebhookDelivery:
    """A `WebhookDelivery` from the API's JSON (`body` only from single reads)."""
    body = data.get("body")
    return WebhookDelivery(
        id=data["id"],
        subscription_id=data["subscription_id"],
        tenant="",
        event_id=data["event_id"],
        task_id=data["task_id"],
        event_type=data["event_type"],
        webhook_id=data["webhook_id"],
        status=DeliveryStatus(data["status"]),
        attempts=data["attempts"],
        next_attempt_at=data["next_attempt_at"],
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        body=orjson.dumps(body).decode() if body is not None else "",
        last_status_code=data.get("last_status_code"),
        last_error=data.get("last_error"),
        delivered_at=data.get("delivered_at"),
    )


class WebhooksClient:
    """Subscriptions, deliveries, retry and replay over the API (`Client.webhooks`).
    Reads and idempotent changes retry like the rest of the client; creating does not
    (a retried creation could make two subscriptions)."""

    def __init__(self, request: Request) -> None:
        self._request = request

    async def create(
        self,
        url: str,
        event_types: Sequence[str],
        *,
        workflows: Sequence[str] | None = None,
        task_id: str | None = None,
        description: str | None = None,
    ) -> WebhookSubscription:
        """A new subscription, with its `secret` (shown this once)."""
        body: dict[str, Any] = {"url": url, "event_types": list(event_types)}
        if workflows is not None:
            body["workflows"] = list(workflows)
        if task_id is not None:
            body["task_id"] = task_id
        if description is not None:
            body["description"] = description
        response = await self._request("POST", "/v1/webhooks", retry=False, json=body)
        return subscription_from_json(response.json())

    async def list_subscriptions(
        self, *, task_id: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[WebhookSubscription], str | None]:
        """A page of subscriptions, newest first, and the cursor of the next page."""
        params: dict[str, Any] = {"limit": limit}
        if task_id is not None:
            params["task_id"] = task_id
        if cursor is not None:
            params["cursor"] = cursor
        response = await self._request("GET", "/v1/webhooks", retry=True, params=params)
        data = response.json()
        return [subscription_from_json(s) for s in data["items"]], data.get("next_cursor")

    async def get(self, subscription_id: str) -> WebhookSubscription:
        """One subscription (`NotFoundError` when there is none)."""
        response = await self._request("GET", f"/v1/webhooks/{subscription_id}", retry=True)
        return subscription_from_json(response.json())

    async def update(
        self,
        subscription_id: str,
        *,
        url: str | None = None,
        event_types: Sequence[str] | None = None,
        workflows: Sequence[str] | None = _KEEP,
        description: str | None = _KEEP,
        enabled: bool | None = None,
    ) -> WebhookSubscription:
        """Change fields; `enabled=False` disables, `enabled=True` enables again."""
        body: dict[str, Any] = {}
        if url is not None:
            body["url"] = url
        if event_types is not None:
            body["event_types"] = list(event_types)
        if workflows is not _KEEP:
            body["workflows"] = None if workflows is None else list(workflows)
        if description is not _KEEP:
            body["description"] = description
        if enabled is not None:
            body["enabled"] = enabled
        response = await self._request(
            "PATCH", f"/v1/webhooks/{subscription_id}", retry=True, json=body
        )
        return subscription_from_json(response.json())

    async def delete(self, subscription_id: str) -> None:
        """Delete a subscription and its deliveries."""
        await self._request("DELETE", f"/v1/webhooks/{subscription_id}", retry=False)

    async def rotate_secret(
        self, subscription_id: str, *, overlap_seconds: float | None = None
    ) -> WebhookSubscription:
        """A new secret (in the result, shown once); the old one also signs meanwhile."""
        body = {} if overlap_seconds is None else {"overlap_seconds": overlap_seconds}
        response = await self._request(
            "POST", f"/v1/webhooks/{subscription_id}/rotate-secret", retry=False, json=body
        )
        return subscription_from_json(response.json())

    async def deliveries(
        self,
        *,
        subscription_id: str | None = None,
        status: Sequence[str] | None = None,
        task_id: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[WebhookDelivery], str | None]:
        """A page of deliveries, newest first, and the cursor of the next page."""
        params: list[tuple[str, Any]] = [("limit", limit)]
        for name, value in (
            ("subscription_id", subscription_id),
            ("task_id", task_id),
            ("cursor", cursor),
        ):
            if value is not None:
                params.append((name, value))
        params += [("status", s) for s in status or ()]
        response = await self._request("GET", "/v1/webhook-deliveries", retry=True, params=params)
        data = response.json()
        return [delivery_from_json(d) for d in data["items"]], data.get("next_cursor")

    async def delivery(self, delivery_id: str) -> WebhookDelivery:
        """One delivery, with its body."""
        response = await self._request("GET", f"/v1/webhook-deliveries/{delivery_id}", retry=True)
        return delivery_from_json(response.json())

    async def retry(self, delivery_id: str) -> WebhookDelivery:
        """Send a delivery again now (same `webhook-id`, fresh schedule)."""
        response = await self._request(
            "POST", f"/v1/webhook-deliveries/{delivery_id}/retry", retry=True
        )
        return delivery_from_json(response.json())

    async def replay(
        self, subscription_id: str, *, since: float | None = None, after_event: int | None = None
    ) -> Replayed:
        """Send the subscription's events since a time and/or after an event id again."""
        body: dict[str, Any] = {}
        if since is not None:
            body["since"] = since
        if after_event is not None:
            body["after_event"] = after_event
        response = await self._request(
            "POST", f"/v1/webhooks/{subscription_id}/replay", retry=True, json=body
        )
        data = response.json()
        return Replayed(data["reset"], data["created"], data["last_event_id"], data["more"])
