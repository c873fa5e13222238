"""The approval inbox and the review read model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tether.errors import TaskNotFound
from tether.models import Approval, ApprovalFilter, StepRecord, Task

if TYPE_CHECKING:
    from tether.app import Tether


@dataclass
class Review:
    """What a reviewer needs to decide: the request, its task and the steps so far."""

    approval: Approval
    task: Task
    steps: list[StepRecord]


async def inbox(app: Tether, flt: ApprovalFilter) -> list[Approval]:
    """Approval requests newest first (of `flt.tenant`; None: every tenant)."""
    await app.open()
    return await app.store.list_approvals(flt)


async def get(app: Tether, approval_id: str, tenant: str | None) -> Approval | None:
    """An approval by id, or None (also when it is another tenant's)."""
    await app.open()
    return await app.store.get_approval(approval_id, tenant)


async def review(app: Tether, approval_id: str, tenant: str | None) -> Review | None:
    """The approval with its task and step log, or None when either is gone (another
    tenant's, or purged between the reads)."""
    approval = await get(app, approval_id, tenant)
    if approval is None:
        return None
    try:
        task = await app.get(approval.task_id, tenant=tenant)
    except TaskNotFound:
        return None
    return Review(approval, task, await app.store.get_steps(approval.task_id))
