"""What `tether dlq` does, and the two ways to do it: on the database through
`tether.services.dlq` (`LocalDlq`), or over a server's HTTP API with
`tether.Client.dlq` (`RemoteDlq`). `Operations.dlq` is one of them
(`tether.cli.operations`), so each command has one code path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from tether.errors import DlqGroupNotFound
from tether.models.dlq import DlqAction, DlqGroup, DlqGroupStatus, DlqMember, DlqMemberState
from tether.services import dlq as service

if TYPE_CHECKING:
    from tether.app import Tether
    from tether.client import Client

PAGE = 500
"""The API's largest page."""


class DlqOperations(Protocol):
    """The dead-letter commands' operations, for one tenant and identity."""

    async def groups(self, status: DlqGroupStatus | None, limit: int) -> list[DlqGroup]:
        """Groups, latest failure first (`status` None: all), at most `limit`."""
        ...

    async def group(self, fingerprint: str) -> DlqGroup:
        """One group (`DlqGroupNotFound` locally, a 404 over HTTP)."""
        ...

    async def tasks(
        self, fingerprint: str, state: DlqMemberState | None, limit: int
    ) -> list[DlqMember]:
        """A group's tasks, newest failure first."""
        ...

    async def actions(self, fingerprint: str, limit: int) -> list[DlqAction]:
        """A group's audit trail, newest first."""
        ...

    async def act(
        self,
        fingerprint: str,
        action: str,
        *,
        task_ids: Sequence[str] | None,
        reason: str | None,
        assignee: str | None,
        limit: int,
    ) -> DlqAction:
        """Take an action on the group (or its `task_ids`); the recorded action."""
        ...


class LocalDlq:
    """On `app`'s database, as `tenant`; `identity` acts."""

    def __init__(self, app: Tether, tenant: str, identity: str) -> None:
        self.app, self.tenant, self.identity = app, tenant, identity

    async def groups(self, status: DlqGroupStatus | None, limit: int) -> list[DlqGroup]:
        return await service.groups(self.app, self.tenant, status=status, limit=limit)

    async def group(self, fingerprint: str) -> DlqGroup:
        found = await service.group(self.app, fingerprint, self.tenant)
        if found is None:
            raise DlqGroupNotFound(f"no dead-letter group {fingerprint!r}")
        return found

    async def tasks(
        self, fingerprint: str, state: DlqMemberState | None, limit: int
    ) -> list[DlqMember]:
        return await service.members(self.app, fingerprint, self.tenant, state=state, limit=limit)

    async def actions(self, fingerprint: str, limit: int) -> list[DlqAction]:
        return await service.actions(self.app, self.tenant, fingerprint, limit=limit)

    async def act(
        self,
        fingerprint: str,
        action: str,
        *,
        task_ids: Sequence[str] | None,
        reason: str | None,
        assignee: str | None,
        limit: int,
    ) -> DlqAction:
        request = service.request(
            action, self.identity, task_ids=task_ids, reason=reason, assignee=assignee, limit=limit
        )
        done, _ = await service.act(self.app, fingerprint, self.tenant, request)
        return done


class RemoteDlq:
    """Over HTTP with `client`, as its credential."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def groups(self, status: DlqGroupStatus | None, limit: int) -> list[DlqGroup]:
        found: list[DlqGroup] = []
        cursor: str | None = None
        while len(found) < limit:
            page, cursor = await self.client.dlq.groups(
                status=status or "all", cursor=cursor, limit=min(PAGE, limit - len(found))
            )
            found += page
            if cursor is None:
                break
        return found

    async def group(self, fingerprint: str) -> DlqGroup:
        found, _, _ = await self.client.dlq.group(fingerprint)
        return found

    async def tasks(
        self, fingerprint: str, state: DlqMemberState | None, limit: int
    ) -> list[DlqMember]:
        found: list[DlqMember] = []
        cursor: str | None = None
        while len(found) < limit:
            page, cursor = await self.client.dlq.tasks(
                fingerprint, state=state, cursor=cursor, limit=min(PAGE, limit - len(found))
            )
            found += page
            if cursor is None:
                break
        return found

    async def actions(self, fingerprint: str, limit: int) -> list[DlqAction]:
        found, _ = await self.client.dlq.actions(fingerprint, limit=min(PAGE, limit))
        return found

    async def act(
        self,
        fingerprint: str,
        action: str,
        *,
        task_ids: Sequence[str] | None,
        reason: str | None,
        assignee: str | None,
        limit: int,
    ) -> DlqAction:
        return await self.client.dlq.act(
            fingerprint,
            action,
            task_ids=task_ids,
            reason=None if action == "escalate" else reason,
            note=reason if action == "escalate" else None,
            assignee=assignee,
            limit=limit,
        )
