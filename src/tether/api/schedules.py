"""Schedule endpoints (`/v1/schedules`): create, list, get, pause, resume, delete,
trigger now.

Included by `tether.api.app.create_app` (listed in `OPTIONAL_ROUTERS`). Everything is
scoped to the caller's tenant: another tenant's schedule answers 404. Reading takes
`schedules:read`; pausing, resuming and triggering `schedules:run`; creating and
deleting `schedules:manage` (docs/api.md, docs/schedules.md).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Body, Depends, Path, Query, Response

from tether.api import cursors, problem_types
from tether.api.deps import require, tether_app
from tether.api.problems import ProblemError, responses
from tether.api.schedule_schemas import ScheduleIn, ScheduleList, ScheduleOut
from tether.api.schemas import TaskOut
from tether.api.tasks import REPLAY_HEADER, IdemKey
from tether.app import Tether
from tether.auth import Permission, Principal
from tether.errors import InvalidSchedule, ScheduleExists
from tether.models.schedules import Schedule
from tether.services import schedules

router = APIRouter(prefix="/v1", tags=["schedules"])

AUTH = (401, 403)
Name = Annotated[str, Path(min_length=1, max_length=100, description="Schedule name")]
Read = Annotated[Principal, Depends(require(Permission.SCHEDULES_READ))]
Run = Annotated[Principal, Depends(require(Permission.SCHEDULES_RUN))]
Manage = Annotated[Principal, Depends(require(Permission.SCHEDULES_MANAGE))]
App = Annotated[Tether, Depends(tether_app)]
Cursor = Annotated[
    str | None,
    Query(max_length=cursors.MAX_LENGTH, description="`next_cursor` of the previous page"),
]
T = TypeVar("T")


async def _checked(call: Awaitable[T]) -> T:
    try:
        return await call
    except InvalidSchedule as exc:
        raise ProblemError(
            problem_types.INVALID_REQUEST,
            str(exc),
            errors=[{"loc": ["body", exc.field], "msg": str(exc), "type": "value_error"}],
        ) from None
    except ScheduleExists as exc:
        raise ProblemError(problem_types.SCHEDULE_EXISTS, str(exc)) from None


def _found(schedule: Schedule | None) -> ScheduleOut:
    if schedule is None:
        raise ProblemError(problem_types.SCHEDULE_NOT_FOUND, "schedule not found")
    return ScheduleOut.of(schedule)


@router.post(
    "/schedules",
    status_code=201,
    response_model=ScheduleOut,
    summary="Create a schedule",
    responses=responses(400, *AUTH, 409, 413, 415, 422),
)
async def create_schedule(
    body: Annotated[ScheduleIn, Body()], who: Manage, app: App, response: Response
) -> ScheduleOut:
    """Store a schedule, active from its first tick after now. The workflow must be
    registered and the input must fit it (422 otherwise); 409 when the name is taken."""
    created = await _checked(schedules.create(app, who.tenant, body.spec(), created_by=who.subject))
    response.headers["Location"] = f"/v1/schedules/{created.name}"
    return ScheduleOut.of(created)


@router.get(
    "/schedules",
    response_model=ScheduleList,
    summary="List schedules",
    responses=responses(*AUTH, 422),
)
async def list_schedules(
    who: Read,
    app: App,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ScheduleList:
    """The tenant's schedules by name, each with its next ticks; page with `cursor`."""
    after = None if cursor is None else cursors.decode("schedules", cursor, (str,))[0]
    found = await schedules.list_(app, who.tenant, after=after, limit=limit + 1)
    items, next_cursor = cursors.page(found, limit, lambda s: cursors.encode("schedules", s.name))
    return ScheduleList(items=[ScheduleOut.of(s) for s in items], next_cursor=next_cursor)


@router.get(
    "/schedules/{name}",
    response_model=ScheduleOut,
    summary="Get a schedule",
    responses=responses(*AUTH, 404),
)
async def get_schedule(name: Name, who: Read, app: App) -> ScheduleOut:
    """A schedule: its definition, status, next ticks and latest tick."""
    return _found(await schedules.get(app, name, who.tenant))


@router.post(
    "/schedules/{name}/pause",
    response_model=ScheduleOut,
    summary="Pause a schedule",
    responses=responses(*AUTH, 404),
)
async def pause_schedule(name: Name, who: Run, app: App) -> ScheduleOut:
    """No tick starts a task until it is resumed (pausing a paused one changes nothing)."""
    return _found(await schedules.pause(app, name, who.tenant))


@router.post(
    "/schedules/{name}/resume",
    response_model=ScheduleOut,
    summary="Resume a schedule",
    responses=responses(*AUTH, 404),
)
async def resume_schedule(name: Name, who: Run, app: App) -> ScheduleOut:
    """Active again from its first tick after now: ticks passed while it was paused
    never run."""
    return _found(await schedules.resume(app, name, who.tenant))


@router.delete(
    "/schedules/{name}",
    status_code=204,
    summary="Delete a schedule",
    responses=responses(*AUTH, 404),
)
async def delete_schedule(name: Name, who: Manage, app: App) -> Response:
    """Delete it; the tasks it started stay. One declared in code is stored again when
    a process declaring it starts (pause it to keep it off)."""
    if not await schedules.delete(app, name, who.tenant):
        raise ProblemError(problem_types.SCHEDULE_NOT_FOUND, "schedule not found")
    return Response(status_code=204)


@router.post(
    "/schedules/{name}/trigger",
    status_code=202,
    response_model=TaskOut,
    summary="Run a schedule now",
    responses={
        202: {
            "description": "The task (or, with the same Idempotency-Key, the earlier one)",
            "headers": {
                "Location": {"description": "URL of the task", "schema": {"type": "string"}},
                REPLAY_HEADER: {
                    "description": "`true` when the Idempotency-Key matched an earlier task",
                    "schema": {"type": "string", "enum": ["true"]},
                },
            },
        },
        **responses(*AUTH, 404, 422),
    },
)
async def trigger_schedule(
    name: Name, who: Run, app: App, response: Response, idempotency_key: IdemKey = None
) -> TaskOut:
    """Start the schedule's workflow with its input now, paused or not; its ticks stay
    as they were."""
    handle = await schedules.trigger(app, name, who.tenant, idempotency_key=idempotency_key)
    if handle is None:
        raise ProblemError(problem_types.SCHEDULE_NOT_FOUND, "schedule not found")
    response.headers["Location"] = f"/v1/tasks/{handle.id}"
    if not handle.created:
        response.headers[REPLAY_HEADER] = "true"
    return TaskOut.of(handle.initial)


__all__ = ["router"]
