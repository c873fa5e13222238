"""Receiving an inbound signed webhook: verify it (Standard Webhooks, the hook's own
secret), map it, and act on it once per webhook-id (`Store.receive_hook`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson
from standardwebhooks import WebhookVerificationError

from tether import storable
from tether.errors import TetherError
from tether.inbound import HookMappingError
from tether.models import HookReceipt
from tether.store.base import InboundHook

if TYPE_CHECKING:
    from tether.app import Tether


class UnknownHook(TetherError):
    """No inbound hook has this name."""


class BadSignature(TetherError):
    """The delivery's Standard Webhooks headers do not verify with the hook's secret
    (missing, malformed, outside the 5-minute timestamp tolerance, or signed otherwise)."""


async def receive(app: Tether, name: str, body: bytes, headers: Mapping[str, str]) -> HookReceipt:
    """Act on a delivery to the hook `name` (headers with lower-case names): start its
    workflow or signal its task, once per `webhook-id`. Raises `UnknownHook`,
    `BadSignature`, `HookMappingError` (a verified body without what the mapping
    needs), `InputValidationError`, `NotStorable`, `TaskNotFound` or `InvalidTransition`."""
    hook = app.hooks.get(name)
    if hook is None:
        raise UnknownHook(f"no inbound hook named {name!r}")
    try:
        hook.verifier.verify(body, dict(headers), json_parse=False)
    except (WebhookVerificationError, ValueError) as exc:  # ValueError: garbled headers
        raise BadSignature(f"the webhook signature does not verify: {_reason(exc)}") from None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HookMappingError("the body is not JSON") from None
    storable.check_text(headers["webhook-id"], "webhook-id")
    tenant = hook.tenant or app.settings.tenant
    inbound = InboundHook(
        hook=name,
        webhook_id=headers["webhook-id"],
        tenant=tenant,
        ttl=app.settings.hook_dedup_ttl,
    )
    if hook.workflow is not None:
        value = payload if hook.input is None else hook.input(payload)
        inbound.start = app.new_task(hook.workflow, value, tenant=tenant, created_by=f"hook:{name}")
    else:
        inbound.signal_task = hook.target_task(payload, headers)
        inbound.signal_name = hook.signal
        inbound.signal_payload = storable.encode(hook.signal_payload(payload), "payload")
    await app.open()
    return await app.store.receive_hook(inbound, app.clock.now())


def _reason(exc: Exception) -> str:
    if isinstance(exc, WebhookVerificationError):
        return str(exc).lower() or "no matching signature"
    return "malformed signature headers"
