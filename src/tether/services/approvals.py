"""The review read model: an approval with what a reviewer needs to decide. (The inbox
itself is the facade's: `Tether.approvals`.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tether.errors import TaskNotFound
from tether.models import Approval, StepRecord, Task

if TYPE_CHECKING:
    from tether.app import Tether


@dataclass
class Review:
    """What a reviewer needs to decide: the request, its task and the steps so far."""

    approval: Approval
    task: Task
    steps: list[StepRecord]


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
