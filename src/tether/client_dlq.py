"""`Client.dlq`: the dead-letter endpoints of the HTTP API, for `tether.Client`.

async with Client(url, token=TOKEN) as client:
    groups, _ = await client.dlq.groups()                  # open groups, newest first
    done = await client.dlq.retry(groups[0].fingerprint)   # re-run them from the failed step
    await client.dlq.dismiss(fp, "test orders", task_ids=[...])
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx

from tether.models import TaskError
from tether.models.dlq import (
    DlqAction,
    DlqActionType,
    DlqGroup,
    DlqGroupStatus,
    DlqMember,
    DlqMemberState,
    DlqTrend,
)
from tether.models.times import parse_time

Request = Callable[..., Awaitable[httpx.Response]]


def _error(data: Mapping[str, Any]) -> TaskError:
    error = TaskError.from_json(dict(data))
    assert error is not None
    return error


def group_from_json(data: Mapping[str, Any], tenant: str = "") -> DlqGroup:
    """A `DlqGroup` from the API's JSON (the tenant is the caller's, not in the body)."""
    trend = data.get("trend") or {}
    escalated = data.get("escalated_at")
    return DlqGroup(
        tenant=tenant,
        fingerprint=data["fingerprint"],
        status=DlqGroupStatus(data["status"]),
        failures=data["failures"],
        open=data["open"],
        first_seen=parse_time(data["first_seen"]),
        last_seen=parse_time(data["last_seen"]),
        step=data.get("step"),
        error_type=data["error_type"],
        workflows=list(data.get("workflows") or []),
        example_task_id=data["example_task_id"],
        example_error=_error(data["example_error"]),
        assignee=data.get("assignee"),
        note=data.get("note"),
        escalated_at=None if escalated is None else parse_time(escalated),
        trend=DlqTrend(tuple(trend.get("hourly", ())), tuple(trend.get("daily", ()))),
        example_traceback=data.get("example_traceback"),
    )


def member_from_json(data: Mapping[str, Any]) -> DlqMember:
    """A `DlqMember` from the API's JSON."""
    return DlqMember(
        task_id=data["task_id"],
        workflow=data["workflow"],
        workflow_version=data["workflow_version"],
        failed_at=parse_time(data["failed_at"]),
        error=_error(data["error"]),
        state=DlqMemberState(data["state"]),
        retried_as=data.get("retried_as"),
        action_id=data.get("action_id"),
    )


def action_from_json(data: Mapping[str, Any], tenant: str = "") -> DlqAction:
    """A `DlqAction` from the API's JSON."""
    return DlqAction(
        id=data["id"],
        tenant=tenant,
        fingerprint=data["fingerprint"],
        action=DlqActionType(data["action"]),
        actor=data["actor"],
        at=parse_time(data["at"]),
        reason=data.get("reason"),
        assignee=data.get("assignee"),
        task_ids=list(data.get("task_ids") or []),
        created=list(data.get("created") or []),
        requested=data.get("requested"),
    )


class DlqClient:
    """The dead-letter queue over the API (`Client.dlq`). Reads retry like the rest of
    the client; an action always carries an idempotency key (a fresh one unless given),
    so its retries are safe too: the server answers a repeat with the recorded action."""

    def __init__(self, request: Request) -> None:
        self._request = request

    async def groups(
        self, *, status: DlqGroupStatus | str = "open", cursor: str | None = None, limit: int = 50
    ) -> tuple[list[DlqGroup], str | None]:
        """A page of groups, latest failure first (`status="all"`: every status), and
        the cursor of the next page."""
        params: dict[str, Any] = {"status": str(status), "limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await self._request("GET", "/v1/dlq", retry=True, params=params)
        data = response.json()
        return [group_from_json(g) for g in data["items"]], data.get("next_cursor")

    async def group(self, fingerprint: str) -> tuple[DlqGroup, list[DlqMember], str | None]:
        """A group (with its example's traceback), its first page of tasks, and the
        cursor of their next page (`NotFoundError` when there is no such group)."""
        response = await self._request("GET", f"/v1/dlq/{fingerprint}", retry=True)
        data = response.json()
        tasks = data["tasks"]
        return (
            group_from_json(data["group"]),
            [member_from_json(m) for m in tasks["items"]],
            tasks.get("next_cursor"),
        )

    async def tasks(
        self,
        fingerprint: str,
        *,
        state: DlqMemberState | str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[DlqMember], str | None]:
        """A page of a group's tasks, newest failure first, and the next page's cursor."""
        params: dict[str, Any] = {"limit": limit}
        if state is not None:
            params["state"] = str(state)
        if cursor is not None:
            params["cursor"] = cursor
        response = await self._request(
            "GET", f"/v1/dlq/{fingerprint}/tasks", retry=True, params=params
        )
        data = response.json()
        return [member_from_json(m) for m in data["items"]], data.get("next_cursor")

    async def actions(
        self, fingerprint: str, *, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[DlqAction], str | None]:
        """A page of a group's audit trail, newest first, and the next page's cursor."""
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await self._request(
            "GET", f"/v1/dlq/{fingerprint}/actions", retry=True, params=params
        )
        data = response.json()
        return [action_from_json(a) for a in data["items"]], data.get("next_cursor")

    async def act(
        self,
        fingerprint: str,
        action: DlqActionType | str,
        *,
        task_ids: Sequence[str] | None = None,
        reason: str | None = None,
        note: str | None = None,
        assignee: str | None = None,
        limit: int = 1000,
        idempotency_key: str | None = None,
    ) -> DlqAction:
        """Take `action` on the group (or its `task_ids`); the recorded action."""
        body: dict[str, Any] = {"action": str(action)}
        if str(action) in (DlqActionType.RETRY, DlqActionType.COMPENSATE):
            body["limit"] = limit
        for name, value in (
            ("task_ids", None if task_ids is None else list(task_ids)),
            ("reason", reason),
            ("note", note),
            ("assignee", assignee),
        ):
            if value is not None:
                body[name] = value
        key = idempotency_key or f"client-{uuid.uuid4()}"
        response = await self._request(
            "POST",
            f"/v1/dlq/{fingerprint}/actions",
            retry=True,
            json=body,
            headers={"Idempotency-Key": key},
        )
        return action_from_json(response.json())

    async def retry(
        self,
        fingerprint: str,
        *,
        task_ids: Sequence[str] | None = None,
        reason: str | None = None,
        limit: int = 1000,
    ) -> DlqAction:
        """Re-run open members from their failed step (`created`: the new tasks)."""
        return await self.act(
            fingerprint, DlqActionType.RETRY, task_ids=task_ids, reason=reason, limit=limit
        )

    async def compensate(
        self,
        fingerprint: str,
        *,
        task_ids: Sequence[str] | None = None,
        reason: str | None = None,
        limit: int = 1000,
    ) -> DlqAction:
        """Undo open members' completed steps (`created`: the compensation tasks)."""
        return await self.act(
            fingerprint, DlqActionType.COMPENSATE, task_ids=task_ids, reason=reason, limit=limit
        )

    async def escalate(
        self,
        fingerprint: str,
        assignee: str,
        *,
        note: str | None = None,
        task_ids: Sequence[str] | None = None,
    ) -> DlqAction:
        """Assign the group to `assignee` with `note`, and notify."""
        return await self.act(
            fingerprint, DlqActionType.ESCALATE, task_ids=task_ids, note=note, assignee=assignee
        )

    async def dismiss(
        self, fingerprint: str, reason: str, *, task_ids: Sequence[str] | None = None
    ) -> DlqAction:
        """Close open members (all, or `task_ids`) with `reason`."""
        return await self.act(fingerprint, DlqActionType.DISMISS, task_ids=task_ids, reason=reason)
