"""`app.dlq`: the dead-letter queue of a `Tether` app, in process (docs/dlq.md).

    groups = await app.dlq.groups(tenant="acme")              # open groups, newest first
    group = await app.dlq.group(groups[0].fingerprint, tenant="acme")
    done = await app.dlq.retry(group.fingerprint, tenant="acme", by="ops@acme")
    await app.dlq.dismiss(fp, tenant="acme", by="ops@acme", reason="bad input, fixed upstream")

Each call is `tether.services.dlq` for the app; `tenant` defaults to the settings'
tenant, `by` to the app's identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tether.models.dlq import (
    DlqAction,
    DlqActionType,
    DlqGroup,
    DlqGroupStatus,
    DlqMember,
    DlqMemberState,
)
from tether.services import dlq as service

if TYPE_CHECKING:
    from tether.app import Tether


class DeadLetters:
    """The dead-letter queue of `app` (`app.dlq`)."""

    def __init__(self, app: Tether) -> None:
        self._app = app

    def _tenant(self, tenant: str | None) -> str:
        return tenant or self._app.settings.tenant

    async def groups(
        self,
        *,
        tenant: str | None = None,
        status: DlqGroupStatus | None = DlqGroupStatus.OPEN,
        limit: int = 50,
        after: tuple[float, str] | None = None,
    ) -> list[DlqGroup]:
        """Groups by latest failure, newest first (`status` None: every status)."""
        return await service.groups(
            self._app, self._tenant(tenant), status=status, after=after, limit=limit
        )

    async def group(self, fingerprint: str, *, tenant: str | None = None) -> DlqGroup | None:
        """One group, with its trend and its example's traceback; None when none."""
        return await service.group(self._app, fingerprint, self._tenant(tenant))

    async def tasks(
        self,
        fingerprint: str,
        *,
        tenant: str | None = None,
        state: DlqMemberState | None = None,
        limit: int = 50,
        before: tuple[float, str] | None = None,
    ) -> list[DlqMember]:
        """The group's failed tasks, newest first (`state`: only open, retried or
        dismissed ones)."""
        return await service.members(
            self._app, fingerprint, self._tenant(tenant), state=state, before=before, limit=limit
        )

    async def actions(
        self, fingerprint: str | None = None, *, tenant: str | None = None, limit: int = 50
    ) -> list[DlqAction]:
        """The audit trail, newest first (one group's, or the tenant's)."""
        return await service.actions(self._app, self._tenant(tenant), fingerprint, limit=limit)

    async def act(
        self,
        fingerprint: str,
        action: DlqActionType | str,
        *,
        tenant: str | None = None,
        by: str | None = None,
        task_ids: Sequence[str] | None = None,
        reason: str | None = None,
        assignee: str | None = None,
        idempotency_key: str | None = None,
        limit: int = 1000,
    ) -> DlqAction:
        """Take `action` on the group, or on its `task_ids`; the recorded action (its
        `task_ids` are those it changed; a retry's new tasks are in `created`)."""
        request = service.request(
            action,
            by or self._app.identity,
            task_ids=task_ids,
            reason=reason,
            assignee=assignee,
            idempotency_key=idempotency_key,
            limit=limit,
        )
        done, _ = await service.act(self._app, fingerprint, self._tenant(tenant), request)
        return done

    async def retry(
        self,
        fingerprint: str,
        *,
        tenant: str | None = None,
        by: str | None = None,
        task_ids: Sequence[str] | None = None,
        reason: str | None = None,
        limit: int = 1000,
    ) -> DlqAction:
        """Re-run open members (`task_ids`, or up to `limit` of the group, oldest first)
        as new linked tasks from their failed step; finished steps are not run again."""
        return await self.act(
            fingerprint,
            DlqActionType.RETRY,
            tenant=tenant,
            by=by,
            task_ids=task_ids,
            reason=reason,
            limit=limit,
        )

    async def compensate(
        self,
        fingerprint: str,
        *,
        tenant: str | None = None,
        by: str | None = None,
        task_ids: Sequence[str] | None = None,
        reason: str | None = None,
        limit: int = 1000,
    ) -> DlqAction:
        """Undo open members' completed steps (`task_ids`, or up to `limit` of the group,
        oldest first): a linked task each, in phase `compensation`, runs the
        compensations they have not run (docs/sagas.md); `created` lists them."""
        return await self.act(
            fingerprint,
            DlqActionType.COMPENSATE,
            tenant=tenant,
            by=by,
            task_ids=task_ids,
            reason=reason,
            limit=limit,
        )

    async def escalate(
        self,
        fingerprint: str,
        assignee: str,
        *,
        note: str | None = None,
        tenant: str | None = None,
        by: str | None = None,
        task_ids: Sequence[str] | None = None,
    ) -> DlqAction:
        """Assign the group to `assignee` with `note`, and notify (`dlq.escalated`)."""
        return await self.act(
            fingerprint,
            DlqActionType.ESCALATE,
            tenant=tenant,
            by=by,
            task_ids=task_ids,
            reason=note,
            assignee=assignee,
        )

    async def dismiss(
        self,
        fingerprint: str,
        reason: str,
        *,
        tenant: str | None = None,
        by: str | None = None,
        task_ids: Sequence[str] | None = None,
    ) -> DlqAction:
        """Close open members (`task_ids`, or all) with `reason`; nothing runs."""
        return await self.act(
            fingerprint,
            DlqActionType.DISMISS,
            tenant=tenant,
            by=by,
            task_ids=task_ids,
            reason=reason,
        )
