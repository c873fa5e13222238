"""Inbound signed webhooks: `POST /v1/hooks/{name}` (agent to agent).

Included by `tether.api.app.create_app` (listed in `OPTIONAL_ROUTERS`). No bearer token
or API key: a delivery is authenticated by its Standard Webhooks signature, made with
the hook's own secret (a bad or missing one answers 401). A delivery starts the hook's
workflow or signals a task, once per `webhook-id`: a redelivery answers 202 with the
same receipt and `Idempotent-Replayed: true`, and does nothing again.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, Field

from tether.api.deps import tether_app
from tether.api.problems import ProblemError, responses
from tether.app import Tether
from tether.inbound import HookMappingError
from tether.services import hooks

router = APIRouter(prefix="/v1", tags=["hooks"])

HookName = Annotated[str, Path(min_length=1, max_length=100, description="Hook name")]


class HookReceiptOut(BaseModel):
    """What a delivery did (or, for a redelivery, had done)."""

    hook: str
    webhook_id: str
    action: str = Field(description="started (a new task) or signalled (an existing task)")
    task_id: str
    signal_id: int | None = None
    received_at: float = Field(description="Epoch seconds of the first delivery")
    replayed: bool = Field(description="True when this webhook-id had been received before")


@router.post(
    "/hooks/{name}",
    status_code=202,
    summary="Receive a signed webhook",
    responses=responses(400, 401, 404, 409, 413, 415, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "security": [],
        "parameters": [
            {"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
            for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
        ],
    },
)
async def receive_hook(
    name: HookName,
    request: Request,
    response: Response,
    app: Tether = Depends(tether_app),
) -> HookReceiptOut:
    """Verify a Standard Webhooks delivery with the hook's secret and act on it: start
    the hook's workflow (the body mapped to its input) or signal a task (its id from the
    body or a header). Once per `webhook-id`."""
    body = await request.body()
    limit = app.settings.hook_max_body_bytes
    if len(body) > limit:
        raise ProblemError(413, f"the webhook body is over {limit} bytes")
    try:
        receipt = await hooks.receive(app, name, body, dict(request.headers))
    except hooks.UnknownHook as exc:
        raise ProblemError(404, str(exc)) from None
    except hooks.BadSignature as exc:
        raise ProblemError(401, str(exc)) from None
    except HookMappingError as exc:
        raise ProblemError(422, str(exc)) from None
    if receipt.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return HookReceiptOut(
        hook=receipt.hook,
        webhook_id=receipt.webhook_id,
        action=receipt.action,
        task_id=receipt.task_id,
        signal_id=receipt.signal_id,
        received_at=receipt.received_at,
        replayed=receipt.replayed,
    )
