"""Task endpoints: submit (one or a batch), read, list, cancel, steps, signals.

Every lookup is scoped to the caller's tenant in the store query itself, so another
tenant's task is indistinguishable from a missing one (404).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response

from tether.api import cursors, problem_types
from tether.api.deps import app_of, require, tether_app
from tether.api.limits import retry_after_header
from tether.api.problems import ProblemError, input_errors, not_storable_error, responses
from tether.api.schemas import (
    BatchOut,
    BatchSubmission,
    CancelRequest,
    RerunRequest,
    SignalOut,
    SpendOut,
    StepList,
    StepOut,
    TaskList,
    TaskOut,
    TaskSubmission,
    TimeIn,
)
from tether.api.webhooks import refused
from tether.app import Tether
from tether.auth import Permission, Principal
from tether.egress import EgressRefused
from tether.errors import InputValidationError, NotStorable, UnknownWorkflow
from tether.flow import SubmitLimiter
from tether.models import TaskFilter, TaskStatus
from tether.models.times import earliest_shown_as
from tether.store.base import NewTask
from tether.submission import batch_item_key

router = APIRouter(prefix="/v1", tags=["tasks"])

AUTH = (401, 403)
TaskId = Annotated[str, Path(min_length=1, max_length=100, description="Task id")]
IdemKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Same key and body: the same task again; same key, other body: 422",
    ),
]
REPLAY_HEADER = "Idempotent-Replayed"
ShortId = Annotated[
    str | None,
    Query(
        min_length=4,
        max_length=100,
        description="Only ids that begin or end with this (the CLI's short ids)",
    ),
]


def _new_task(app: Tether, sub: TaskSubmission, who: Principal, key: str | None) -> NewTask:
    # The key's hash is `Tether.new_task`'s (tether.submission), as on every channel.
    return app.new_task(
        sub.workflow,
        sub.input,
        idempotency_key=key,
        tenant=who.tenant,
        queue=sub.queue,
        priority=sub.priority,
        correlation_id=sub.correlation_id,
        deadline=sub.deadline,
        created_by=who.subject,
        callback_url=sub.callback_url,
        spend_budget=None if sub.spend_budget is None else sub.spend_budget.budget(),
    )


async def _rate_limit(request: Request, who: Principal, cost: int) -> None:
    limiter: SubmitLimiter = request.app.state.limiter  # fleet-wide (ADR 90)
    wait = await limiter.take(who.tenant, cost)
    if wait > 0:
        raise ProblemError(
            problem_types.RATE_LIMITED,
            "submission rate limit reached for this tenant",
            headers=retry_after_header(wait),
        )


@router.post(
    "/tasks",
    status_code=202,
    response_model=TaskOut,
    summary="Submit a task",
    responses={
        202: {
            "description": "Accepted (or replayed: see the Idempotent-Replayed header)",
            "headers": {
                "Location": {"description": "URL of the task", "schema": {"type": "string"}},
                REPLAY_HEADER: {
                    "description": "`true` when the Idempotency-Key matched an earlier task",
                    "schema": {"type": "string", "enum": ["true"]},
                },
            },
        },
        **responses(400, *AUTH, 413, 415, 422, 429),
    },
)
async def submit_task(
    request: Request,
    submission: Annotated[TaskSubmission, Body()],
    who: Annotated[Principal, Depends(require(Permission.SUBMIT))],
    idempotency_key: IdemKey = None,
) -> Response:
    """Validate and store a task, and answer at once: the work runs on workers."""
    # The hottest route: the app from the request, not a dependency, and the answer
    # serialized once here, not validated again against `response_model`.
    app = app_of(request)
    new = _new_task(app, submission, who, idempotency_key)
    await _rate_limit(request, who, 1)
    try:
        (handle,) = await app.submit_batch([new])
    except EgressRefused as exc:
        raise refused(exc, ["body", "callback_url"]) from None
    headers = {"Location": f"/v1/tasks/{handle.id}"}
    if not handle.created:
        headers[REPLAY_HEADER] = "true"
    body = TaskOut.of(handle.initial, handle.callback).model_dump_json()
    return Response(body, status_code=202, headers=headers, media_type="application/json")


@router.post(
    "/tasks:batch",
    status_code=202,
    response_model=BatchOut,
    summary="Submit up to 1,000 tasks at once",
    responses={
        202: {
            "description": "All accepted",
            "headers": {
                REPLAY_HEADER: {
                    "description": "`true` when every task was a replay",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            },
        },
        **responses(400, *AUTH, 413, 415, 422, 429),
    },
)
async def submit_batch(
    request: Request,
    response: Response,
    batch: Annotated[BatchSubmission, Body()],
    who: Annotated[Principal, Depends(require(Permission.SUBMIT))],
    app: Annotated[Tether, Depends(tether_app)],
    idempotency_key: IdemKey = None,
) -> BatchOut:
    """Validate every task first (all field errors listed), then store all in one
    transaction. With an Idempotency-Key K, task i uses the key `K/i`."""
    tasks: list[NewTask] = []
    errors: list[dict[str, Any]] = []
    for i, sub in enumerate(batch.tasks):
        try:
            tasks.append(_new_task(app, sub, who, batch_item_key(idempotency_key, i)))
        except UnknownWorkflow as exc:
            errors.append(
                {
                    "loc": ["body", "tasks", i, "workflow"],
                    "msg": str(exc),
                    "type": "unknown_workflow",
                }
            )
        except InputValidationError as exc:
            errors += input_errors(exc, ("body", "tasks", i))
        except NotStorable as exc:
            errors.append(not_storable_error(exc, ("body", "tasks", i, exc.field)))
    if errors:
        raise ProblemError(
            problem_types.INVALID_REQUEST, "the batch is invalid; nothing was stored", errors=errors
        )
    await _rate_limit(request, who, len(tasks))
    try:
        handles = await app.submit_batch(tasks)
    except EgressRefused as exc:
        raise refused(exc, ["body", "tasks"]) from None
    if handles and not any(h.created for h in handles):
        response.headers[REPLAY_HEADER] = "true"
    return BatchOut(items=[TaskOut.of(h.initial, h.callback) for h in handles])


@router.get(
    "/tasks/{task_id}",
    response_model=TaskOut,
    summary="Get a task",
    responses=responses(*AUTH, 404),
)
async def get_task(
    task_id: TaskId,
    who: Annotated[Principal, Depends(require(Permission.READ))],
    app: Annotated[Tether, Depends(tether_app)],
) -> TaskOut:
    """Status, progress (current step, steps done), the result or error, and what the
    task spent (`spend`)."""
    task = await app.get(task_id, tenant=who.tenant)
    out = TaskOut.of(task)
    out.spend = SpendOut.of(await app.spend_of(task))
    return out


@router.get(
    "/tasks",
    response_model=TaskList,
    summary="List tasks",
    responses=responses(*AUTH, 422),
)
async def list_tasks(
    who: Annotated[Principal, Depends(require(Permission.READ))],
    app: Annotated[Tether, Depends(tether_app)],
    status: Annotated[list[TaskStatus] | None, Query(description="Any of these")] = None,
    workflow: Annotated[str | None, Query(max_length=200)] = None,
    correlation_id: Annotated[str | None, Query(max_length=200)] = None,
    created_after: Annotated[
        TimeIn | None, Query(description="RFC 3339 with an offset, inclusive")
    ] = None,
    created_before: Annotated[
        TimeIn | None, Query(description="RFC 3339 with an offset, exclusive")
    ] = None,
    parent_id: Annotated[
        str | None,
        Query(min_length=1, max_length=100, description="Only the children of this task"),
    ] = None,
    cursor: cursors.Cursor = None,
    short_id: ShortId = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> TaskList:
    """The caller's tenant's tasks, newest first, filtered; page with `cursor`."""
    after_id = None if cursor is None else cursors.decode("tasks", cursor, (str,))[0]
    found = await app.list_tasks(
        TaskFilter(
            tenant=who.tenant,
            status=status or None,
            workflow=workflow,
            correlation_id=correlation_id,
            # Bounds at the microsecond a time names, as responses show it (ADR 65).
            created_after=None if created_after is None else earliest_shown_as(created_after),
            created_before=None if created_before is None else earliest_shown_as(created_before),
            after_id=after_id,
            short_id=short_id,
            parent_id=parent_id,
            limit=limit + 1,
        )
    )
    items, next_cursor = cursors.page(found, limit, lambda t: cursors.encode("tasks", t.id))
    return TaskList(items=[TaskOut.of(t) for t in items], next_cursor=next_cursor)


@router.get(
    "/tasks/{task_id}/children",
    response_model=TaskList,
    summary="A task's children",
    responses=responses(*AUTH, 404, 422),
)
async def task_children(
    task_id: TaskId,
    who: Annotated[Principal, Depends(require(Permission.READ))],
    app: Annotated[Tether, Depends(tether_app)],
    cursor: cursors.Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> TaskList:
    """The child tasks this task started (`ctx.child`, `ctx.start_child`), newest first;
    page with `cursor`. 404 when the task is not the caller's tenant's."""
    await app.get(task_id, tenant=who.tenant)
    after_id = None if cursor is None else cursors.decode("tasks", cursor, (str,))[0]
    found = await app.list_tasks(
        TaskFilter(tenant=who.tenant, parent_id=task_id, after_id=after_id, limit=limit + 1)
    )
    items, next_cursor = cursors.page(found, limit, lambda t: cursors.encode("tasks", t.id))
    return TaskList(items=[TaskOut.of(t) for t in items], next_cursor=next_cursor)


@router.post(
    "/tasks/{task_id}/cancel",
    status_code=202,
    response_model=TaskOut,
    summary="Cancel a task",
    responses=responses(400, *AUTH, 404, 409, 413, 415, 422),
)
async def cancel_task(
    task_id: TaskId,
    who: Annotated[Principal, Depends(require(Permission.CANCEL))],
    app: Annotated[Tether, Depends(tether_app)],
    cancel: Annotated[CancelRequest | None, Body()] = None,
) -> TaskOut:
    """Queued and waiting tasks end `cancelled` at once; a running task is asked to stop
    (`cancel_requested`) and ends `cancelled` at its next step boundary. With
    `{"compensate": true}` a run first undoes the task's completed steps (a task not
    running is queued for it; phase `compensation`). 409 when ended."""
    compensate = cancel is not None and cancel.compensate
    task = await app.cancel(task_id, tenant=who.tenant, by=who.subject, compensate=compensate)
    return TaskOut.of(task)


@router.get(
    "/tasks/{task_id}/steps",
    response_model=StepList,
    summary="A task's step log",
    responses=responses(*AUTH, 404),
)
async def task_steps(
    task_id: TaskId,
    who: Annotated[Principal, Depends(require(Permission.READ))],
    app: Annotated[Tether, Depends(tether_app)],
) -> StepList:
    """Every step-log entry, in sequence order."""
    steps = await app.steps(task_id, tenant=who.tenant)
    return StepList(items=[StepOut.of(s) for s in steps])


@router.post(
    "/tasks/{task_id}/signals/{name}",
    status_code=202,
    response_model=SignalOut,
    summary="Send a signal to a task",
    responses=responses(400, *AUTH, 404, 409, 413, 415, 422),
)
async def send_signal(
    task_id: TaskId,
    name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:\-]{1,200}$")],
    who: Annotated[Principal, Depends(require(Permission.SIGNAL))],
    app: Annotated[Tether, Depends(tether_app)],
    payload: Annotated[Any, Body(description="Any JSON value (optional)")] = None,
) -> SignalOut:
    """Deliver `payload` to the workflow's `ctx.wait_for_signal(name)`; kept until then."""
    try:
        sig = await app.signal(task_id, name, payload, tenant=who.tenant)
    except NotStorable as exc:  # the body is the payload
        raise ProblemError(
            problem_types.INVALID_REQUEST,
            "the request holds a value Tether does not accept",
            errors=[not_storable_error(exc, ("body",))],
        ) from None
    return SignalOut(id=sig.id, task_id=sig.task_id, name=sig.name, created_at=sig.created_at)


def _forked(description: str, *codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented answers of a route that forks a task: 202 with the new task's
    `Location`, and the problems `codes`."""
    location = {"description": "URL of the new task", "schema": {"type": "string"}}
    return {
        202: {"description": description, "headers": {"Location": location}},
        **responses(*codes),
    }


@router.post(
    "/tasks/{task_id}/rerun",
    status_code=202,
    response_model=TaskOut,
    summary="Re-run an ended task",
    responses=_forked("The new task", 400, *AUTH, 404, 409, 413, 415, 422),
)
async def rerun_task(
    task_id: TaskId,
    response: Response,
    who: Annotated[Principal, Depends(require(Permission.RERUN))],
    app: Annotated[Tether, Depends(tether_app)],
    rerun: Annotated[RerunRequest | None, Body()] = None,
) -> TaskOut:
    """Create a new task, linked to this one (`forked_from`), that reuses its finished
    steps: all of them, or those before `from_step`. A step it runs again presents the
    idempotency key of the step it replaces. 409 while the task has not ended. Each call
    creates another task."""
    from_seq = rerun.from_step if rerun is not None else None
    handle = await app.rerun(task_id, from_seq=from_seq, tenant=who.tenant, created_by=who.subject)
    response.headers["Location"] = f"/v1/tasks/{handle.id}"
    return TaskOut.of(handle.initial)


@router.post(
    "/tasks/{task_id}/compensate",
    status_code=202,
    response_model=TaskOut,
    summary="Undo a failed or cancelled task's completed steps",
    responses=_forked("The compensation task", *AUTH, 404, 409),
)
async def compensate_task(
    task_id: TaskId,
    response: Response,
    who: Annotated[Principal, Depends(require(Permission.COMPENSATE))],
    app: Annotated[Tether, Depends(tether_app)],
) -> TaskOut:
    """Create a new task, linked to this one (`forked_from`), in phase `compensation`:
    it runs the compensations of this task's completed steps, latest first (those this
    task already ran are not run again), and ends as this task did, the steps undone
    listed on its error (`error.compensated`). 409 unless the task failed or was
    cancelled."""
    handle = await app.compensate(task_id, tenant=who.tenant, created_by=who.subject)
    response.headers["Location"] = f"/v1/tasks/{handle.id}"
    return TaskOut.of(handle.initial)
