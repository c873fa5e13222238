"""`LocalOperations`: the commands' operations on the database, through the facade
(`tether.app.Tether`) and `tether.services`, as one tenant and one local identity."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing
from typing import Any

from tether.app import Tether
from tether.cli.breaker_ops import LocalBreakers
from tether.cli.dlq_ops import LocalDlq
from tether.cli.rollout_ops import LocalRollouts
from tether.cli.schedule_ops import LocalSchedules
from tether.follow import follow_task
from tether.models import (
    Approval,
    ApprovalFilter,
    Budget,
    DaySpend,
    Event,
    SpendLine,
    StepRecord,
    Task,
    TaskFilter,
    TaskStatus,
)

POLL_SECONDS = 0.2
"""`follow` reads the event log this often (and at once when this process commits)."""


class LocalOperations:
    """The operations on `app`'s database, for `tenant`; `identity` is who cancels,
    re-runs and decides (the login name, or `--as` for decisions)."""

    def __init__(self, app: Tether, tenant: str, identity: str) -> None:
        self.app = app
        self.tenant = tenant
        self.identity = identity
        self.schedules = LocalSchedules(app, tenant, identity)
        self.rollouts = LocalRollouts(app, tenant, identity)
        self.dlq = LocalDlq(app, tenant, identity)
        self.breakers = LocalBreakers(app, tenant, identity)

    async def submit(
        self,
        workflow: str,
        input: Any,
        *,
        idempotency_key: str | None,
        correlation_id: str | None,
        priority: int,
        queue: str | None,
        spend_budget: Budget | None = None,
    ) -> tuple[Task, bool]:
        handle = await self.app.submit(
            workflow,
            input,
            idempotency_key=idempotency_key,
            tenant=self.tenant,
            correlation_id=correlation_id,
            priority=priority,
            queue=queue,
            spend_budget=spend_budget,
        )
        return handle.initial, handle.created

    async def get(self, task_id: str) -> Task:
        return await self.app.get(task_id, tenant=self.tenant)

    async def steps(self, task_id: str) -> list[StepRecord]:
        return await self.app.steps(task_id, tenant=self.tenant)

    async def tasks(
        self,
        *,
        status: list[TaskStatus] | None = None,
        workflow: str | None = None,
        short_id: str | None = None,
        limit: int = 50,
    ) -> list[Task]:
        flt = TaskFilter(
            tenant=self.tenant, status=status, workflow=workflow, short_id=short_id, limit=limit
        )
        return await self.app.list_tasks(flt)

    async def cancel(self, task_id: str, compensate: bool = False) -> Task:
        return await self.app.cancel(
            task_id, tenant=self.tenant, by=self.identity, compensate=compensate
        )

    async def compensate(self, task_id: str) -> Task:
        handle = await self.app.compensate(task_id, tenant=self.tenant, created_by=self.identity)
        return handle.initial

    async def signal(self, task_id: str, name: str, payload: Any) -> int:
        record = await self.app.signal(task_id, name, payload, tenant=self.tenant)
        return record.id

    async def rerun(self, task_id: str, from_step: int | None) -> Task:
        handle = await self.app.rerun(
            task_id, from_seq=from_step, tenant=self.tenant, created_by=self.identity
        )
        return handle.initial

    async def approvals(
        self,
        *,
        status: str | None = None,
        risk: str | None = None,
        task_id: str | None = None,
        short_id: str | None = None,
        limit: int = 100,
    ) -> list[Approval]:
        flt = ApprovalFilter(
            tenant=self.tenant,
            status=status,
            risk=risk,
            task_id=task_id,
            short_id=short_id,
            limit=limit,
        )
        return await self.app.approvals(flt)

    async def decide(
        self, approval_id: str, *, approve: bool, reason: str, changes: dict[str, Any] | None
    ) -> Approval:
        return await self.app.decide(
            approval_id,
            reviewer=self.identity,
            approve=approve,
            reason=reason,
            changes=changes,
            tenant=self.tenant,
        )

    async def follow(self, task_id: str, on_event: Callable[[Event], None]) -> Task:
        rounds = follow_task(
            self.app.store, self.app.clock, task_id, self.tenant, after=0, poll=POLL_SECONDS
        )
        async with aclosing(rounds):
            async for update in rounds:
                for event in update.events:
                    on_event(event)
                if update.ended:
                    return update.task  # its final event was read after the terminal status
        raise AssertionError("follow_task stops only after an ended update")

    async def task_spend(self, task_id: str) -> SpendLine:
        return await self.app.task_spend(task_id, tenant=self.tenant)

    async def day_spend(self, day: str | None) -> DaySpend:
        return await self.app.spend(day=day, tenant=self.tenant)
