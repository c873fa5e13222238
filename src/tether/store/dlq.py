"""The dead-letter part of the store interface: groups of failed tasks by error
fingerprint, their members, the actions on them and their audit trail (ADR 79).

A group's counters are kept by the database in the transaction that fails a task; an
action takes members out of the open set and appends to the audit trail in one
transaction, so the counters, the members' states and the trail always agree.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tether.models import NotificationRecord, Task
from tether.models.dlq import DlqAction, DlqGroup, DlqGroupStatus, DlqMember, DlqMemberState

if TYPE_CHECKING:  # `tether.store.base` builds `Store` from this module's interface
    from tether.store.base import NewTask


class DlqStore(abc.ABC):
    """The dead-letter queue's operations (a part of `Store`). Every one is scoped to a
    tenant: another tenant's group does not exist."""

    @abc.abstractmethod
    async def list_dlq_groups(
        self,
        tenant: str,
        *,
        status: DlqGroupStatus | None = DlqGroupStatus.OPEN,
        after: tuple[float, str] | None = None,
        limit: int = 50,
        now: float,
    ) -> list[DlqGroup]:
        """Groups by latest failure, newest first, after (`last_seen`, `fingerprint`)
        `after`; with their trend up to `now`. `status` None: every status."""

    @abc.abstractmethod
    async def get_dlq_group(self, tenant: str, fingerprint: str, now: float) -> DlqGroup | None:
        """One group, with its trend and its example's traceback; None when there is none."""

    @abc.abstractmethod
    async def list_dlq_members(
        self,
        tenant: str,
        fingerprint: str,
        *,
        state: DlqMemberState | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[DlqMember]:
        """A group's failed tasks, newest first, before (`failed_at`, `task_id`)."""

    @abc.abstractmethod
    async def dlq_open_tasks(
        self, tenant: str, fingerprint: str, task_ids: Sequence[str] | None, limit: int
    ) -> list[Task]:
        """Open members of a group as tasks: those of `task_ids`, or the oldest `limit`."""

    @abc.abstractmethod
    async def dlq_action(self, tenant: str, key: str) -> DlqAction | None:
        """The action recorded with idempotency key `key`, or None."""

    @abc.abstractmethod
    async def dlq_retry(
        self, action: DlqAction, forks: list[tuple[str, NewTask]], now: float
    ) -> DlqAction | None:
        """Re-run each (task, new task) of `forks` still open, from its failed step, and
        record `action` with the tasks it re-ran (`task_ids`, `created`), in one
        transaction. None (nothing done) when the group does not exist."""

    @abc.abstractmethod
    async def dlq_close(
        self,
        action: DlqAction,
        task_ids: Sequence[str] | None,
        notifications: list[NotificationRecord],
        now: float,
    ) -> DlqAction | None:
        """Record `action` in one transaction: a dismissal closes the open members of
        `task_ids` (None: all of them) and lists them in `action.task_ids`; an
        escalation assigns the group and stores `notifications`. None when the group
        does not exist."""

    @abc.abstractmethod
    async def list_dlq_actions(
        self,
        tenant: str,
        fingerprint: str | None = None,
        *,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[DlqAction]:
        """The audit trail, newest first (of one group, or all the tenant's)."""

    @abc.abstractmethod
    async def purge_dlq(self, quiet_before: float, now: float, batch: int = 500) -> int:
        """Delete up to `batch` groups without open members and with no failure or
        action since `quiet_before`, with their audit trail (and hourly buckets older
        than a week); return how many groups."""
