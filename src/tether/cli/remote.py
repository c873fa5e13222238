"""`RemoteOperations`: the commands' operations over a Tether server's HTTP API, with
`tether.Client`. The server's auth decides everything: the tenant is the credential's,
and so is the reviewer of a decision (its subject)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing
from typing import Any

from tether.cli.breaker_ops import RemoteBreakers
from tether.cli.dlq_ops import RemoteDlq
from tether.cli.rollout_ops import RemoteRollouts
from tether.cli.schedule_ops import RemoteSchedules
from tether.client import Client
from tether.models import (
    Approval,
    Budget,
    DaySpend,
    Event,
    SpendLine,
    StepRecord,
    Task,
    TaskStatus,
)

PAGE = 500
"""The API's largest page of tasks or approvals."""
RETRIES = 2
"""Retries of a failed connection, 429 or 5xx: a person waits on the answer (a few
seconds at most), and may run the command again (a submission with its key is safe)."""


class RemoteOperations:
    """The operations on the server at `url`, as the holder of `token` or `api_key`."""

    def __init__(self, url: str, *, token: str | None, api_key: str | None) -> None:
        self.client = Client(url, token=token, api_key=api_key, max_retries=RETRIES)
        self.schedules = RemoteSchedules(self.client)
        self.rollouts = RemoteRollouts(self.client)
        self.dlq = RemoteDlq(self.client)
        self.breakers = RemoteBreakers(self.client)

    async def aclose(self) -> None:
        """Close the connections."""
        await self.client.aclose()

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
        return await self.client.submit_or_replay(
            workflow,
            input,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
            priority=priority,
            queue=queue,
            spend_budget=spend_budget,
        )

    async def get(self, task_id: str) -> Task:
        return await self.client.get(task_id)

    async def steps(self, task_id: str) -> list[StepRecord]:
        return await self.client.steps(task_id)

    async def tasks(
        self,
        *,
        status: list[TaskStatus] | None = None,
        workflow: str | None = None,
        short_id: str | None = None,
        limit: int = 50,
    ) -> list[Task]:
        found: list[Task] = []
        cursor: str | None = None
        while len(found) < limit:
            page, cursor = await self.client.list_tasks(
                status=None if status is None else [str(s) for s in status],
                workflow=workflow,
                short_id=short_id,
                limit=min(PAGE, limit - len(found)),
                cursor=cursor,
            )
            found += page
            if cursor is None:
                break
        return found

    async def cancel(self, task_id: str, compensate: bool = False) -> Task:
        return await self.client.cancel(task_id, compensate=compensate)

    async def compensate(self, task_id: str) -> Task:
        return await self.client.compensate(task_id)

    async def signal(self, task_id: str, name: str, payload: Any) -> int:
        return await self.client.signal(task_id, name, payload)

    async def rerun(self, task_id: str, from_step: int | None) -> Task:
        return await self.client.rerun(task_id, from_step=from_step)

    async def approvals(
        self,
        *,
        status: str | None = None,
        risk: str | None = None,
        task_id: str | None = None,
        short_id: str | None = None,
        limit: int = 100,
    ) -> list[Approval]:
        return await self.client.approvals(
            status=status,
            risk=risk,
            task_id=task_id,
            short_id=short_id,
            limit=min(PAGE, limit),  # the inbox's one page (the API has no cursor for it)
        )

    async def decide(
        self, approval_id: str, *, approve: bool, reason: str, changes: dict[str, Any] | None
    ) -> Approval:
        return await self.client.decide(
            approval_id, approve=approve, reason=reason, changes=changes
        )

    async def follow(self, task_id: str, on_event: Callable[[Event], None]) -> Task:
        # The server-sent event stream ends once the task has ended and its last event
        # was sent (it resumes after a dropped connection with Last-Event-ID).
        events = self.client.events(task_id, after=0, follow=True)
        async with aclosing(events):
            async for event in events:
                on_event(event)
        return await self.client.get(task_id)

    async def task_spend(self, task_id: str) -> SpendLine:
        return await self.client.task_spend(task_id)

    async def day_spend(self, day: str | None) -> DaySpend:
        return await self.client.spend(day=day)
