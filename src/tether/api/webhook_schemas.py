"""Request and response bodies of the webhook endpoints (`tether.api.webhooks`). Times
are RFC 3339 in responses, as everywhere in the API (`tether.api.schemas.Time`)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from tether.api.schemas import WHOLE, Time, TimeIn
from tether.models import EVENT_CATALOGUE
from tether.models.webhooks import (
    ALL_EVENTS,
    DeliveryStatus,
    SubscriptionStatus,
    WebhookDelivery,
    WebhookSubscription,
)
from tether.storable import SAFE_INT_MAX

EventTypeName = Annotated[
    str,
    # Stated here; checked by the service (`InvalidWebhook`), which keeps the message.
    WithJsonSchema({"type": "string", "enum": [*(str(t) for t in EVENT_CATALOGUE), ALL_EVENTS]}),
]
"""An event type of the catalogue (docs/events.md), or `*` for all."""
WorkflowName = Annotated[str, Field(min_length=1, max_length=200)]

URL_FIELD = Field(
    min_length=1,
    max_length=2000,
    description="https URL (http only to hosts the operator allowlists); checked against "
    "the SSRF guard now and at every delivery",
)
TYPES_FIELD = Field(
    min_length=1,
    max_length=64,
    description="Event types from the catalogue (docs/events.md), or `*` for all",
)
WORKFLOWS_FIELD = Field(
    default=None, min_length=1, max_length=100, description="Only tasks of these workflows"
)


class SubscriptionIn(BaseModel):
    """A new subscription."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/tether",
                    "event_types": ["task.succeeded", "task.failed", "approval.requested"],
                    "workflows": ["research"],
                    "description": "research results to the CRM",
                }
            ]
        },
    )

    url: str = URL_FIELD
    event_types: list[EventTypeName] = TYPES_FIELD
    workflows: list[WorkflowName] | None = WORKFLOWS_FIELD
    task_id: str | None = Field(
        default=None, min_length=1, max_length=100, description="Only this task's events"
    )
    description: str | None = Field(default=None, max_length=500)


class SubscriptionPatch(BaseModel):
    """Fields to change; absent ones stay. `workflows: null` means every workflow."""

    model_config = ConfigDict(extra="forbid", strict=True)

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    event_types: list[EventTypeName] | None = Field(default=None, min_length=1, max_length=64)
    workflows: list[WorkflowName] | None = WORKFLOWS_FIELD
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = Field(
        default=None, description="false disables (pending deliveries fail); true enables"
    )


class RotateIn(BaseModel):
    """How long the old secret keeps signing next to the new one."""

    model_config = ConfigDict(extra="forbid", strict=True)

    overlap_seconds: float | None = Field(
        default=None, ge=0, le=30 * 86400, description="Default: `webhook_secret_overlap`"
    )


class ReplayIn(BaseModel):
    """Which of the subscription's events to send again: since a time and/or after an
    event id (at least one)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "anyOf": [
                {"required": ["since"], "properties": {"since": {"type": "string"}}},
                {"required": ["after_event"], "properties": {"after_event": {"type": "integer"}}},
            ]
        },
    )

    since: TimeIn | None = Field(
        default=None, description="RFC 3339 with an offset (epoch seconds also accepted)"
    )
    after_event: Annotated[int, Field(ge=0, le=SAFE_INT_MAX), WHOLE] | None = Field(
        default=None, description="Event id"
    )


class SubscriptionOut(BaseModel):
    """A subscription as the API shows it (never its secret, except at creation)."""

    id: str
    tenant: str
    url: str
    event_types: list[str]
    workflows: list[str] | None = None
    task_id: str | None = None
    description: str | None = None
    status: SubscriptionStatus
    disabled_reason: str | None = None
    disabled_at: Time | None = None
    consecutive_failures: int = Field(description="Deliveries in a row failed for good")
    previous_secret_until: Time | None = Field(
        default=None, description="Until then the previous secret also signs (a rotation)"
    )
    created_at: Time
    updated_at: Time
    created_by: str | None = None

    @classmethod
    def of(cls, s: WebhookSubscription) -> SubscriptionOut:
        return cls(
            id=s.id,
            tenant=s.tenant,
            url=s.url,
            event_types=s.event_types,
            workflows=s.workflows,
            task_id=s.task_id,
            description=s.description,
            status=s.status,
            disabled_reason=s.disabled_reason,
            disabled_at=s.disabled_at,
            consecutive_failures=s.consecutive_failures,
            previous_secret_until=s.previous_secret_until,
            created_at=s.created_at,
            updated_at=s.updated_at,
            created_by=s.created_by,
        )


class SubscriptionWithSecret(SubscriptionOut):
    """A subscription just created or rotated: `secret` is shown this once."""

    secret: str = Field(description="`whsec_...`: verify signatures with it; shown once")

    @classmethod
    def of(cls, s: WebhookSubscription) -> SubscriptionWithSecret:
        return cls(**SubscriptionOut.of(s).model_dump(), secret=s.secret)


class SubscriptionList(BaseModel):
    """A page of subscriptions, newest first."""

    items: list[SubscriptionOut]
    next_cursor: str | None = None


class DeliveryOut(BaseModel):
    """One event for one subscription, and how its delivery went."""

    id: str
    subscription_id: str
    event_id: int
    task_id: str
    event_type: str
    webhook_id: str = Field(description="The `webhook-id` header: the same on every attempt")
    status: DeliveryStatus
    attempts: int
    next_attempt_at: Time
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: Time
    updated_at: Time
    delivered_at: Time | None = None
    body: Any = Field(default=None, description="What is sent (single delivery reads only)")

    @classmethod
    def of(cls, d: WebhookDelivery, *, with_body: bool = False) -> DeliveryOut:
        return cls(
            id=d.id,
            subscription_id=d.subscription_id,
            event_id=d.event_id,
            task_id=d.task_id,
            event_type=d.event_type,
            webhook_id=d.webhook_id,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            created_at=d.created_at,
            updated_at=d.updated_at,
            delivered_at=d.delivered_at,
            body=orjson.loads(d.body) if with_body and d.body else None,
        )


class DeliveryList(BaseModel):
    """A page of deliveries, newest first."""

    items: list[DeliveryOut]
    next_cursor: str | None = None


class ReplayOut(BaseModel):
    """What a replay did."""

    reset: int = Field(description="Deliveries sent again")
    created: int = Field(description="Deliveries made for events that had none")
    last_event_id: int = Field(description="The last event looked at")
    more: bool = Field(description="True: replay again with after_event=last_event_id")
