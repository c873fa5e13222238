"""Webhook endpoints: subscriptions (`/v1/webhooks`), their deliveries, retry, replay.

Included by `tether.api.app.create_app` (listed in `OPTIONAL_ROUTERS`). Everything is
scoped to the caller's tenant: another tenant's subscription or delivery answers 404.
A URL the egress guard refuses (a private, loopback or metadata address, http to a host
not allowlisted) answers 422 before anything is stored or sent (docs/webhooks.md).
The events feed, `GET /v1/events`, stays the source of truth: webhooks tell you sooner.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Body, Depends, Path, Query, Response

from tether.api import cursors, problem_types
from tether.api.deps import require, tether_app
from tether.api.problems import ProblemError, responses
from tether.api.webhook_schemas import (
    DeliveryList,
    DeliveryOut,
    ReplayIn,
    ReplayOut,
    RotateIn,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
    SubscriptionPatch,
    SubscriptionWithSecret,
)
from tether.app import Tether
from tether.auth import Permission, Principal
from tether.egress import EgressRefused
from tether.errors import DeliveryInFlight, InvalidWebhook, WebhookDisabled
from tether.models.webhooks import (
    DeliveryFilter,
    DeliveryStatus,
    WebhookDelivery,
    WebhookSubscription,
)
from tether.services import webhooks

router = APIRouter(prefix="/v1", tags=["webhooks"])

AUTH = (401, 403)
SubId = Annotated[str, Path(min_length=1, max_length=100, description="Subscription id")]
DeliveryId = Annotated[str, Path(min_length=1, max_length=100, description="Delivery id")]
Read = Annotated[Principal, Depends(require(Permission.WEBHOOKS_READ))]
Manage = Annotated[Principal, Depends(require(Permission.WEBHOOKS_MANAGE))]
Replay = Annotated[Principal, Depends(require(Permission.WEBHOOKS_REPLAY))]
App = Annotated[Tether, Depends(tether_app)]
T = TypeVar("T")


def refused(exc: EgressRefused, loc: list[str | int]) -> ProblemError:
    """The 422 of a URL the egress guard refuses, naming the field and the reason."""
    return ProblemError(
        problem_types.URL_REFUSED,
        str(exc),
        errors=[{"loc": loc, "msg": exc.reason, "type": "url_refused"}],
    )


async def _checked(call: Awaitable[T]) -> T:
    try:
        return await call
    except EgressRefused as exc:
        raise refused(exc, ["body", "url"]) from None
    except InvalidWebhook as exc:
        raise ProblemError(
            problem_types.INVALID_REQUEST,
            str(exc),
            errors=[{"loc": ["body", exc.field], "msg": str(exc), "type": "value_error"}],
        ) from None
    except WebhookDisabled as exc:
        raise ProblemError(problem_types.WEBHOOK_DISABLED, str(exc)) from None
    except DeliveryInFlight as exc:
        raise ProblemError(problem_types.DELIVERY_IN_FLIGHT, str(exc)) from None


def _found(sub: WebhookSubscription | None) -> WebhookSubscription:
    if sub is None:
        raise ProblemError(problem_types.WEBHOOK_NOT_FOUND, "webhook subscription not found")
    return sub


def _delivery_found(found: WebhookDelivery | None) -> WebhookDelivery:
    if found is None:
        raise ProblemError(problem_types.DELIVERY_NOT_FOUND, "webhook delivery not found")
    return found


@router.post(
    "/webhooks",
    status_code=201,
    response_model=SubscriptionWithSecret,
    summary="Subscribe a URL to events",
    responses=responses(400, *AUTH, 404, 413, 415, 422),
)
async def create_subscription(
    body: Annotated[SubscriptionIn, Body()], who: Manage, app: App
) -> SubscriptionWithSecret:
    """Store a subscription and return it with its signing `secret`, shown this once."""
    sub = await _checked(
        webhooks.create(
            app,
            who.tenant,
            body.url,
            body.event_types,
            workflows=body.workflows,
            task_id=body.task_id,
            description=body.description,
            created_by=who.subject,
        )
    )
    return SubscriptionWithSecret.of(sub)


@router.get(
    "/webhooks",
    response_model=SubscriptionList,
    summary="List subscriptions",
    responses=responses(*AUTH, 422),
)
async def list_subscriptions(
    who: Read,
    app: App,
    task_id: Annotated[str | None, Query(max_length=100)] = None,
    cursor: cursors.Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> SubscriptionList:
    """The tenant's subscriptions, newest first; page with `cursor`."""
    before = None if cursor is None else cursors.decode("webhooks", cursor, (str,))[0]
    found = await webhooks.list_(
        app, who.tenant, task_id=task_id, before_id=before, limit=limit + 1
    )
    items, next_cursor = cursors.page(found, limit, lambda s: cursors.encode("webhooks", s.id))
    return SubscriptionList(items=[SubscriptionOut.of(s) for s in items], next_cursor=next_cursor)


@router.get(
    "/webhooks/{subscription_id}",
    response_model=SubscriptionOut,
    summary="Get a subscription",
    responses=responses(*AUTH, 404),
)
async def get_subscription(subscription_id: SubId, who: Read, app: App) -> SubscriptionOut:
    """A subscription: what it selects, where it sends, whether it is disabled and why."""
    return SubscriptionOut.of(_found(await webhooks.get(app, subscription_id, who.tenant)))


@router.patch(
    "/webhooks/{subscription_id}",
    response_model=SubscriptionOut,
    summary="Change, disable or enable a subscription",
    responses=responses(400, *AUTH, 404, 413, 415, 422),
)
async def update_subscription(
    subscription_id: SubId, body: Annotated[SubscriptionPatch, Body()], who: Manage, app: App
) -> SubscriptionOut:
    """Change fields given in the body. `enabled: false` disables it (its pending
    deliveries fail); `enabled: true` enables it again."""
    given = body.model_fields_set
    sub = await _checked(
        webhooks.update(
            app,
            subscription_id,
            who.tenant,
            url=body.url,
            types=body.event_types,
            workflows=body.workflows if "workflows" in given else webhooks.UNSET,
            description=body.description if "description" in given else webhooks.UNSET,
            enabled=body.enabled,
        )
    )
    return SubscriptionOut.of(_found(sub))


@router.delete(
    "/webhooks/{subscription_id}",
    status_code=204,
    summary="Delete a subscription",
    responses=responses(*AUTH, 404),
)
async def delete_subscription(subscription_id: SubId, who: Manage, app: App) -> Response:
    """Delete it and its deliveries; nothing more is sent."""
    if not await webhooks.delete(app, subscription_id, who.tenant):
        raise ProblemError(problem_types.WEBHOOK_NOT_FOUND, "webhook subscription not found")
    return Response(status_code=204)


@router.post(
    "/webhooks/{subscription_id}/rotate-secret",
    response_model=SubscriptionWithSecret,
    summary="Rotate the signing secret",
    responses=responses(400, *AUTH, 404, 415, 422),
)
async def rotate_secret(
    subscription_id: SubId,
    who: Manage,
    app: App,
    body: Annotated[RotateIn | None, Body()] = None,
) -> SubscriptionWithSecret:
    """A new secret, shown once; the old one keeps signing too during the overlap, so
    deliveries carry both signatures until `previous_secret_until`."""
    overlap = body.overlap_seconds if body is not None else None
    sub = await webhooks.rotate_secret(app, subscription_id, who.tenant, overlap)
    return SubscriptionWithSecret.of(_found(sub))


@router.post(
    "/webhooks/{subscription_id}/replay",
    response_model=ReplayOut,
    summary="Send a subscription's events again",
    responses=responses(400, *AUTH, 404, 409, 415, 422),
)
async def replay(
    subscription_id: SubId, body: Annotated[ReplayIn, Body()], who: Replay, app: App
) -> ReplayOut:
    """Every event of the subscription since `since` and/or after `after_event` is sent
    again (same `webhook-id`s), in event order per task; 409 while it is disabled."""
    done = await _checked(
        webhooks.replay(
            app, subscription_id, who.tenant, since=body.since, after_event=body.after_event
        )
    )
    if done is None:
        raise ProblemError(problem_types.WEBHOOK_NOT_FOUND, "webhook subscription not found")
    return ReplayOut(
        reset=done.reset, created=done.created, last_event_id=done.last_event_id, more=done.more
    )


@router.get(
    "/webhook-deliveries",
    response_model=DeliveryList,
    summary="List deliveries",
    responses=responses(*AUTH, 422),
)
async def list_deliveries(
    who: Read,
    app: App,
    subscription_id: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[list[DeliveryStatus] | None, Query(description="Any of these")] = None,
    task_id: Annotated[str | None, Query(max_length=100)] = None,
    cursor: cursors.Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeliveryList:
    """The tenant's deliveries, newest first: by subscription, status (e.g. `failed`)
    or task; page with `cursor`."""
    found = await webhooks.deliveries(
        app,
        DeliveryFilter(
            tenant=who.tenant,
            subscription_id=subscription_id,
            status=status or None,
            task_id=task_id,
            before_id=None if cursor is None else cursors.decode("deliveries", cursor, (str,))[0],
            limit=limit + 1,
        ),
    )
    items, next_cursor = cursors.page(found, limit, lambda d: cursors.encode("deliveries", d.id))
    return DeliveryList(items=[DeliveryOut.of(d) for d in items], next_cursor=next_cursor)


@router.get(
    "/webhook-deliveries/{delivery_id}",
    response_model=DeliveryOut,
    summary="Get a delivery, with its body",
    responses=responses(*AUTH, 404),
)
async def get_delivery(delivery_id: DeliveryId, who: Read, app: App) -> DeliveryOut:
    """One delivery: its attempts, last outcome, and the body it sends."""
    found = _delivery_found(await webhooks.delivery(app, delivery_id, who.tenant))
    return DeliveryOut.of(found, with_body=True)


@router.post(
    "/webhook-deliveries/{delivery_id}/retry",
    status_code=202,
    response_model=DeliveryOut,
    summary="Send a delivery again now",
    responses=responses(*AUTH, 404, 409),
)
async def retry_delivery(delivery_id: DeliveryId, who: Replay, app: App) -> DeliveryOut:
    """Due now, with a fresh retry schedule and the same `webhook-id`; 409 while it is
    being delivered or its subscription is disabled."""
    found = _delivery_found(await _checked(webhooks.retry(app, delivery_id, who.tenant)))
    return DeliveryOut.of(found)


__all__ = ["refused", "router"]
