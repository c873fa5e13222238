"""Event endpoints: a task's events (JSON or server-sent events) and the tenant's feed.

Event ids are the store's increasing integer ids, so `after=N` and `Last-Event-ID: N`
mean the same thing: everything after event N. The SSE stream follows the task with
`tether.follow.follow_task`: it wakes on the store hub (a change of the task in this
process, or a PostgreSQL NOTIFY) with a short poll as the fallback, and ends once the
task has ended and its last event was sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse

from tether.api.deps import require, tether_app
from tether.api.problems import responses
from tether.api.schemas import EventList, EventOut
from tether.app import Tether
from tether.auth import Permission, Principal
from tether.errors import StoreUnavailable, TaskNotFound
from tether.follow import follow_task
from tether.storable import SAFE_INT_MAX

router = APIRouter(prefix="/v1", tags=["events"])

SSE_POLL = 0.5
"""Seconds between polls while nothing woke the stream (steps do not notify the hub)."""
SSE_KEEPALIVE = 15.0
"""Seconds of silence after which a comment line is sent, so proxies keep the stream."""
PAGE = 500
After = Annotated[int, Query(ge=0, le=SAFE_INT_MAX, description="Only events after this id")]


def sse_frame(event: EventOut) -> bytes:
    data = orjson.dumps(event.model_dump(mode="json"))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, event.type.encode(), data)


async def task_event_stream(
    app: Tether, task_id: str, tenant: str, after: int
) -> AsyncIterator[bytes]:
    """SSE frames of a task's events after `after`, until the task has ended."""
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    yield b"retry: 1000\n\n"
    rounds = follow_task(app.store, app.clock, task_id, tenant, after=after, poll=SSE_POLL)
    async with aclosing(rounds):
        try:
            async for update in rounds:
                for e in update.events:
                    yield sse_frame(EventOut.of(e))
                if update.events:
                    quiet_since = loop.time()
                elif not update.ended and loop.time() - quiet_since >= SSE_KEEPALIVE:
                    quiet_since = loop.time()
                    yield b": keep-alive\n\n"
        except TaskNotFound:
            return  # purged while streaming: the stream simply ends
        except StoreUnavailable:
            # The database went away mid-stream (the answer began, so no 503 now): end
            # it; the client reconnects after `retry:` with its Last-Event-ID.
            return


SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Events, oldest first (JSON), or an SSE stream with "
        "`Accept: text/event-stream` (`id:` is the event id, `event:` its type, "
        "`data:` the event as JSON; resume with `Last-Event-ID`)",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/tasks/{task_id}/events",
    response_model=EventList,
    summary="A task's events (JSON or server-sent events)",
    responses={**SSE_RESPONSE, **responses(401, 403, 404, 422)},
)
async def task_events(
    request: Request,
    task_id: Annotated[str, Path(min_length=1, max_length=100)],
    who: Annotated[Principal, Depends(require(Permission.READ))],
    app: Annotated[Tether, Depends(tether_app)],
    after: After = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE)] = PAGE,
    last_event_id: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, le=SAFE_INT_MAX, description="SSE resume point"),
    ] = None,
) -> EventList | StreamingResponse:
    """The events of one task. With `Accept: text/event-stream`, a live stream that ends
    when the task has ended; `Last-Event-ID` (or `after`) resumes after that event."""
    task = await app.get(task_id, tenant=who.tenant)
    start = last_event_id if last_event_id is not None else after
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(
            task_event_stream(app, task.id, who.tenant, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    events = await app.store.list_events(
        tenant=who.tenant, task_id=task.id, after=start, limit=limit
    )
    items = [EventOut.of(e) for e in events]
    return EventList(items=items, next_after=items[-1].id if items else start)


@router.get(
    "/events",
    response_model=EventList,
    summary="The tenant's event feed",
    responses=responses(401, 403, 422),
)
async def tenant_events(
    who: Annotated[Principal, Depends(require(Permission.READ))],
    app: Annotated[Tether, Depends(tether_app)],
    after: After = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE)] = PAGE,
) -> EventList:
    """Every event of the caller's tenant after `after`, oldest first: catch up after a
    disconnect by passing the last id you processed."""
    events = await app.store.list_events(tenant=who.tenant, after=after, limit=limit)
    items = [EventOut.of(e) for e in events]
    return EventList(items=items, next_after=items[-1].id if items else after)


__all__ = ["router", "task_event_stream"]
