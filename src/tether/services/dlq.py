"""The dead-letter queue: groups of failed tasks by root cause, their tasks, the actions
on them (retry, escalate, dismiss) and the audit trail. The HTTP API (`/v1/dlq`), the
CLI (`tether dlq`), `app.dlq` and, through the API, `tether.Client.dlq` call these;
every operation is scoped to a tenant (another tenant's group does not exist).

An action names a group and, optionally, some of its tasks; it applies to those that
are still open members (the others are skipped, and the result says which were done),
and is appended to the group's audit trail with who, why and when, in the transaction
that does it. With an idempotency key, the same request again returns the action
recorded the first time (docs/dlq.md, ADR 79).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tether import storable
from tether.errors import DlqGroupNotFound, DlqKeyConflict, InvalidDlqAction
from tether.ids import new_id
from tether.models.dlq import (
    OPERATOR_ACTIONS,
    DlqAction,
    DlqActionType,
    DlqGroup,
    DlqGroupStatus,
    DlqMember,
    DlqMemberState,
    DlqRequest,
)

if TYPE_CHECKING:
    from tether.app import Tether

MAX_TASKS = 10_000
"""Task ids one action may name, and the most one retry of a whole group re-runs."""
TEXT_LIMIT = 2000
"""Characters of a reason or note (an assignee: 200)."""


async def groups(
    app: Tether,
    tenant: str,
    *,
    status: DlqGroupStatus | None = DlqGroupStatus.OPEN,
    after: tuple[float, str] | None = None,
    limit: int = 50,
) -> list[DlqGroup]:
    """The tenant's groups by latest failure, newest first (`status` None: all of
    them, also those retried, dismissed or expired), after (`last_seen`, fingerprint)."""
    await app.open()
    return await app.store.list_dlq_groups(
        tenant, status=status, after=after, limit=limit, now=app.clock.now()
    )


async def group(app: Tether, fingerprint: str, tenant: str) -> DlqGroup | None:
    """One group with its trend and its example's traceback; None (also another
    tenant's)."""
    await app.open()
    return await app.store.get_dlq_group(tenant, fingerprint, app.clock.now())


async def members(
    app: Tether,
    fingerprint: str,
    tenant: str,
    *,
    state: DlqMemberState | None = None,
    before: tuple[float, str] | None = None,
    limit: int = 50,
) -> list[DlqMember]:
    """A group's failed tasks, newest failure first, before (`failed_at`, task id)."""
    await app.open()
    return await app.store.list_dlq_members(
        tenant, fingerprint, state=state, before=before, limit=limit
    )


async def actions(
    app: Tether,
    tenant: str,
    fingerprint: str | None = None,
    *,
    before: tuple[float, str] | None = None,
    limit: int = 50,
) -> list[DlqAction]:
    """The audit trail, newest first: one group's, or every group's of the tenant."""
    await app.open()
    return await app.store.list_dlq_actions(tenant, fingerprint, before=before, limit=limit)


def _check(request: DlqRequest) -> None:
    if request.action not in OPERATOR_ACTIONS:
        names = ", ".join(str(a) for a in OPERATOR_ACTIONS)
        raise InvalidDlqAction("action", f"unknown action {request.action!r} ({names})")
    if request.task_ids is not None:
        if not request.task_ids:
            raise InvalidDlqAction("task_ids", "name at least one task, or none for the group")
        if len(request.task_ids) > MAX_TASKS:
            raise InvalidDlqAction("task_ids", f"at most {MAX_TASKS} tasks per action")
    if not 1 <= request.limit <= MAX_TASKS:
        raise InvalidDlqAction("limit", f"limit is between 1 and {MAX_TASKS}")
    for name, text, most in (
        ("reason", request.reason, TEXT_LIMIT),
        ("assignee", request.assignee, 200),
        ("idempotency_key", request.idempotency_key, 200),
        ("actor", request.actor, 200),
    ):
        storable.check_text(text, name)
        if text is not None and len(text) > most:
            raise InvalidDlqAction(name, f"{name} is longer than {most} characters")
    if request.action == DlqActionType.ESCALATE and not (request.assignee or "").strip():
        raise InvalidDlqAction("assignee", "an escalation names who it goes to (assignee)")
    if request.action == DlqActionType.DISMISS and not (request.reason or "").strip():
        raise InvalidDlqAction("reason", "a dismissal says why (reason)")


def _same(action: DlqAction, fingerprint: str, request: DlqRequest) -> bool:
    requested = None if request.task_ids is None else list(request.task_ids)
    return (
        action.fingerprint == fingerprint
        and action.action == request.action
        and action.requested == requested
        and action.reason == request.reason
        and action.assignee == request.assignee
    )


async def act(
    app: Tether, fingerprint: str, tenant: str, request: DlqRequest
) -> tuple[DlqAction, bool]:
    """Take `request` on the group (or its named tasks); the recorded action, and
    whether it is one recorded earlier under the same idempotency key.

    Retry re-runs open members as new linked tasks from their failed step (a fork:
    their succeeded steps are reused, never run again), at most `request.limit` of a
    whole group, oldest first; compensate forks them the same way in phase
    `compensation`, to undo their completed steps (docs/sagas.md). Escalate assigns
    the group and notifies the channels routes give `dlq.escalated`. Dismiss closes
    open members with a reason. Raises `DlqGroupNotFound`, `InvalidDlqAction`,
    `DlqKeyConflict` (the key was used for another request), `UnknownWorkflow` (a
    retried task's workflow is not registered here)."""
    _check(request)
    await app.open()
    store, now = app.store, app.clock.now()
    if request.idempotency_key is not None:
        earlier = await store.dlq_action(tenant, request.idempotency_key)
        if earlier is not None:
            if not _same(earlier, fingerprint, request):
                raise DlqKeyConflict(
                    f"idempotency key {request.idempotency_key!r} was used for another "
                    f"dead-letter action ({earlier.id})"
                )
            return earlier, True
    found = await store.get_dlq_group(tenant, fingerprint, now)
    if found is None:
        raise DlqGroupNotFound(f"no dead-letter group {fingerprint!r}")
    action = DlqAction(
        id=new_id(),
        tenant=tenant,
        fingerprint=fingerprint,
        action=request.action,
        actor=request.actor,
        at=now,
        reason=request.reason,
        assignee=request.assignee,
        requested=None if request.task_ids is None else list(request.task_ids),
        idempotency_key=request.idempotency_key,
    )
    recorded: DlqAction | None
    if request.action in (DlqActionType.RETRY, DlqActionType.COMPENSATE):
        limit = MAX_TASKS if request.task_ids is not None else request.limit
        tasks = await store.dlq_open_tasks(tenant, fingerprint, request.task_ids, limit)
        fork = app.rerun_task if request.action == DlqActionType.RETRY else app.compensation_task
        forks = [(t.id, fork(t, created_by=request.actor)) for t in tasks]
        recorded = await store.dlq_retry(action, forks, now)
    elif request.action == DlqActionType.ESCALATE:
        if request.task_ids is not None:
            named = await store.dlq_open_tasks(tenant, fingerprint, request.task_ids, MAX_TASKS)
            action.task_ids = sorted(t.id for t in named)
        notes = app.notifications.dlq_escalated(found, action)
        recorded = await store.dlq_close(action, None, notes, now)
    else:
        recorded = await store.dlq_close(action, request.task_ids, [], now)
    if recorded is None:
        raise DlqGroupNotFound(f"no dead-letter group {fingerprint!r}")
    return recorded, False


def skipped(action: DlqAction) -> list[str]:
    """The task ids an action named that it did not change (not open members of the
    group: already retried or dismissed, another group's, or no such task)."""
    if action.requested is None or action.action == DlqActionType.ESCALATE:
        return []
    done = set(action.task_ids)
    return [t for t in action.requested if t not in done]


def request(
    action: DlqActionType | str,
    actor: str,
    *,
    task_ids: Sequence[str] | None = None,
    reason: str | None = None,
    assignee: str | None = None,
    idempotency_key: str | None = None,
    limit: int = 1000,
) -> DlqRequest:
    """A `DlqRequest`, with the action's name checked (`InvalidDlqAction`)."""
    try:
        kind = DlqActionType(action)
    except ValueError:
        names = ", ".join(str(a) for a in OPERATOR_ACTIONS)
        raise InvalidDlqAction("action", f"unknown action {action!r} ({names})") from None
    return DlqRequest(
        kind,
        actor,
        None if task_ids is None else tuple(dict.fromkeys(task_ids)),
        reason,
        assignee,
        idempotency_key,
        limit,
    )


__all__ = ["MAX_TASKS", "act", "actions", "group", "groups", "members", "request", "skipped"]
