"""Dead-letter endpoints (`/v1/dlq`): the groups of failed tasks by root cause, a
group with its tasks, actions on a group or on chosen tasks (retry, escalate,
dismiss), and the audit trail.

Included by `tether.api.app.create_app` (listed in `OPTIONAL_ROUTERS`). Everything is
scoped to the caller's tenant: another tenant's group answers 404, and another tenant's
task ids are never members. Reading takes `dlq:read`; acting `dlq:act` (docs/dlq.md).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Response

from tether.api import cursors, problem_types
from tether.api.cursors import Cursor
from tether.api.deps import require, tether_app
from tether.api.dlq_schemas import (
    ActionIn,
    ActionList,
    ActionOut,
    CompensateIn,
    EscalateIn,
    GroupDetail,
    GroupList,
    GroupOut,
    MemberList,
    MemberOut,
    RetryIn,
)
from tether.api.problems import ProblemError, responses
from tether.api.tasks import REPLAY_HEADER, IdemKey
from tether.app import Tether
from tether.auth import Permission, Principal
from tether.errors import DlqGroupNotFound, DlqKeyConflict, InvalidDlqAction
from tether.models.dlq import DlqGroupStatus, DlqMember, DlqMemberState
from tether.services import dlq

router = APIRouter(prefix="/v1", tags=["dead letters"])

AUTH = (401, 403)
Fingerprint = Annotated[
    str,
    Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$", description="Error fingerprint"),
]
Read = Annotated[Principal, Depends(require(Permission.DLQ_READ))]
Act = Annotated[Principal, Depends(require(Permission.DLQ_ACT))]
App = Annotated[Tether, Depends(tether_app)]
Limit = Annotated[int, Query(ge=1, le=500)]
StatusQuery = Annotated[
    DlqGroupStatus | None,
    Query(description="Only groups in this status (default open); `all` lists every group"),
]


def _not_found() -> ProblemError:
    return ProblemError(problem_types.DLQ_GROUP_NOT_FOUND, "dead-letter group not found")


async def _members(
    app: Tether,
    fingerprint: str,
    tenant: str,
    state: DlqMemberState | None,
    cursor: str | None,
    limit: int,
) -> MemberList:
    before = None if cursor is None else cursors.decode("dlq-tasks", cursor, (float, str))
    found = await dlq.members(
        app,
        fingerprint,
        tenant,
        state=state,
        before=None if before is None else (before[0], before[1]),
        limit=limit + 1,
    )

    def cursor_of(m: DlqMember) -> str:
        return cursors.encode("dlq-tasks", m.failed_at, m.task_id)

    items, next_cursor = cursors.page(found, limit, cursor_of)
    return MemberList(items=[MemberOut.of(m) for m in items], next_cursor=next_cursor)


@router.get(
    "/dlq",
    response_model=GroupList,
    summary="List dead-letter groups",
    responses=responses(*AUTH, 422),
)
async def list_groups(
    who: Read,
    app: App,
    status: Annotated[
        str,
        Query(
            pattern="^(open|retried|dismissed|expired|all)$",
            description="open (the default), retried, dismissed, expired, or all",
        ),
    ] = "open",
    cursor: Cursor = None,
    limit: Limit = 50,
) -> GroupList:
    """The tenant's groups of failed tasks by root cause, latest failure first, each
    with its counts, example error and trend; page with `cursor`."""
    after = None if cursor is None else cursors.decode("dlq", cursor, (float, str))
    found = await dlq.groups(
        app,
        who.tenant,
        status=None if status == "all" else DlqGroupStatus(status),
        after=None if after is None else (after[0], after[1]),
        limit=limit + 1,
    )
    items, next_cursor = cursors.page(
        found, limit, lambda g: cursors.encode("dlq", g.last_seen, g.fingerprint)
    )
    return GroupList(items=[GroupOut.of(g) for g in items], next_cursor=next_cursor)


@router.get(
    "/dlq/{fingerprint}",
    response_model=GroupDetail,
    summary="Get a dead-letter group and its tasks",
    responses=responses(*AUTH, 404, 422),
)
async def get_group(
    fingerprint: Fingerprint,
    who: Read,
    app: App,
    state: Annotated[DlqMemberState | None, Query(description="Only tasks in this state")] = None,
    limit: Limit = 50,
) -> GroupDetail:
    """A group (with its example's traceback) and the first page of its tasks, newest
    failure first; the next pages are at `/v1/dlq/{fingerprint}/tasks`."""
    found = await dlq.group(app, fingerprint, who.tenant)
    if found is None:
        raise _not_found()
    tasks = await _members(app, fingerprint, who.tenant, state, None, limit)
    return GroupDetail(group=GroupOut.of(found), tasks=tasks)


@router.get(
    "/dlq/{fingerprint}/tasks",
    response_model=MemberList,
    summary="List a dead-letter group's tasks",
    responses=responses(*AUTH, 404, 422),
)
async def list_members(
    fingerprint: Fingerprint,
    who: Read,
    app: App,
    state: Annotated[DlqMemberState | None, Query(description="Only tasks in this state")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> MemberList:
    """A group's failed tasks, newest failure first, each with what became of it."""
    if await dlq.group(app, fingerprint, who.tenant) is None:
        raise _not_found()
    return await _members(app, fingerprint, who.tenant, state, cursor, limit)


@router.post(
    "/dlq/{fingerprint}/actions",
    status_code=201,
    response_model=ActionOut,
    summary="Act on a dead-letter group",
    responses={
        201: {
            "description": "The action as recorded in the audit trail",
            "headers": {
                REPLAY_HEADER: {
                    "description": "`true` when the Idempotency-Key matched an earlier action",
                    "schema": {"type": "string", "enum": ["true"]},
                },
            },
        },
        **responses(400, *AUTH, 404, 413, 415, 422),
    },
)
async def act(
    fingerprint: Fingerprint,
    body: Annotated[ActionIn, Body()],
    who: Act,
    app: App,
    response: Response,
    idempotency_key: IdemKey = None,
) -> ActionOut:
    """Retry (re-run from the failed step, in bulk: a whole group or the named tasks),
    compensate (fork them to undo their completed steps: docs/sagas.md), escalate
    (assign with a note and notify) or dismiss (with a reason). It applies to the open
    members among the tasks named (`skipped` lists the others), and is recorded with
    the caller as its actor. The same Idempotency-Key and body again returns the
    earlier action."""
    request = dlq.request(
        body.action,
        who.subject,
        task_ids=body.task_ids,
        reason=body.note if isinstance(body, EscalateIn) else body.reason,
        assignee=body.assignee if isinstance(body, EscalateIn) else None,
        idempotency_key=idempotency_key,
        limit=body.limit if isinstance(body, RetryIn | CompensateIn) else 1000,
    )
    try:
        done, replayed = await dlq.act(app, fingerprint, who.tenant, request)
    except DlqGroupNotFound:
        raise _not_found() from None
    except InvalidDlqAction as exc:
        raise ProblemError(
            problem_types.INVALID_REQUEST,
            str(exc),
            errors=[{"loc": ["body", exc.field], "msg": str(exc), "type": "value_error"}],
        ) from None
    except DlqKeyConflict as exc:
        raise ProblemError(
            problem_types.IDEMPOTENCY_CONFLICT,
            str(exc),
            errors=[
                {
                    "loc": ["header", "Idempotency-Key"],
                    "msg": "key reused for another action",
                    "type": "idempotency_conflict",
                }
            ],
        ) from None
    if replayed:
        response.headers[REPLAY_HEADER] = "true"
    return ActionOut.of(done)


@router.get(
    "/dlq/{fingerprint}/actions",
    response_model=ActionList,
    summary="A dead-letter group's audit trail",
    responses=responses(*AUTH, 404, 422),
)
async def list_actions(
    fingerprint: Fingerprint,
    who: Read,
    app: App,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ActionList:
    """Every action on the group, newest first: who, why, when, which tasks (retried
    and dismissed groups keep theirs; retention's `expire` entries too)."""
    if await dlq.group(app, fingerprint, who.tenant) is None:
        raise _not_found()
    before = None if cursor is None else cursors.decode("dlq-actions", cursor, (float, str))
    found = await dlq.actions(
        app,
        who.tenant,
        fingerprint,
        before=None if before is None else (before[0], before[1]),
        limit=limit + 1,
    )
    items, next_cursor = cursors.page(
        found, limit, lambda a: cursors.encode("dlq-actions", a.at, a.id)
    )
    return ActionList(items=[ActionOut.of(a) for a in items], next_cursor=next_cursor)


__all__ = ["router"]
