"""`SQLDlq`: the dead-letter operations of the SQL stores (`DlqStore`), mapped onto the
shared logic in `tether.store.sql.dlq`."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from tether.models import NotificationRecord, Task
from tether.models.dlq import (
    DlqAction,
    DlqActionType,
    DlqGroup,
    DlqGroupStatus,
    DlqMember,
    DlqMemberState,
)
from tether.store.base import NewTask
from tether.store.dlq import DlqStore
from tether.store.hub import Hub
from tether.store.sql import Conn, Dialect
from tether.store.sql import dlq as sqld
from tether.store.sql.control import retry_members
from tether.store.sql.notifications import add_notifications

T = TypeVar("T")


class SQLDlq(DlqStore, abc.ABC):
    """Dead-letter operations over `_run` (one transaction each)."""

    dialect: Dialect
    hub: Hub

    @abc.abstractmethod
    async def _run(self, work: Callable[[Conn], Awaitable[T]], *, write: bool = True) -> T:
        """Run `work` in a transaction of its own (`SQLStore._run`)."""

    async def list_dlq_groups(
        self,
        tenant: str,
        *,
        status: DlqGroupStatus | None = DlqGroupStatus.OPEN,
        after: tuple[float, str] | None = None,
        limit: int = 50,
        now: float,
    ) -> list[DlqGroup]:
        d = self.dialect
        return await self._run(
            lambda c: sqld.list_groups(c, d, tenant, status, after, limit, now), write=False
        )

    async def get_dlq_group(self, tenant: str, fingerprint: str, now: float) -> DlqGroup | None:
        d = self.dialect
        return await self._run(
            lambda c: sqld.get_group(c, d, tenant, fingerprint, now), write=False
        )

    async def list_dlq_members(
        self,
        tenant: str,
        fingerprint: str,
        *,
        state: DlqMemberState | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[DlqMember]:
        return await self._run(
            lambda c: sqld.list_members(c, tenant, fingerprint, state, before, limit), write=False
        )

    async def dlq_open_tasks(
        self, tenant: str, fingerprint: str, task_ids: Sequence[str] | None, limit: int
    ) -> list[Task]:
        d = self.dialect
        return await self._run(
            lambda c: sqld.open_tasks(c, d, tenant, fingerprint, task_ids, limit), write=False
        )

    async def dlq_action(self, tenant: str, key: str) -> DlqAction | None:
        return await self._run(lambda c: sqld.action_by_key(c, tenant, key), write=False)

    async def dlq_retry(
        self, action: DlqAction, forks: list[tuple[str, NewTask]], now: float
    ) -> DlqAction | None:
        d = self.dialect

        async def work(conn: Conn) -> DlqAction | None:
            if not await sqld.group_exists(conn, d, action.tenant, action.fingerprint):
                return None
            done = await retry_members(conn, d, action.tenant, forks, action.id, now)
            recorded = replace(
                action, task_ids=[old for old, _ in done], created=[new for _, new in done]
            )
            await sqld.record_action(conn, recorded)
            return recorded

        recorded = await self._run(work)
        if recorded is not None and recorded.created:
            self.hub.notify_events()
            for queue in {new.queue for _, new in forks}:
                self.hub.notify_work(queue)
        return recorded

    async def dlq_close(
        self,
        action: DlqAction,
        task_ids: Sequence[str] | None,
        notifications: list[NotificationRecord],
        now: float,
    ) -> DlqAction | None:
        d = self.dialect
        tenant, fingerprint = action.tenant, action.fingerprint

        async def work(conn: Conn) -> DlqAction | None:
            if not await sqld.group_exists(conn, d, tenant, fingerprint):
                return None
            recorded = action
            if action.action == DlqActionType.DISMISS:
                closed = await sqld.close_members(
                    conn, d, tenant, fingerprint, task_ids, DlqMemberState.DISMISSED, action.id, now
                )
                recorded = replace(action, task_ids=closed)
            elif action.action == DlqActionType.ESCALATE:
                assert action.assignee is not None
                await sqld.escalate(conn, tenant, fingerprint, action.assignee, action.reason, now)
                if notifications:
                    await add_notifications(conn, notifications, now)
            else:
                raise ValueError(f"dlq_close does not {action.action}")
            await sqld.record_action(conn, recorded)
            return recorded

        return await self._run(work)

    async def list_dlq_actions(
        self,
        tenant: str,
        fingerprint: str | None = None,
        *,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[DlqAction]:
        return await self._run(
            lambda c: sqld.list_actions(c, tenant, fingerprint, before, limit), write=False
        )

    async def purge_dlq(self, quiet_before: float, now: float, batch: int = 500) -> int:
        d = self.dialect
        return await self._run(lambda c: sqld.purge_groups(c, d, quiet_before, now, batch))
