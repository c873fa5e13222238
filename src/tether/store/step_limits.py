"""The step-limit part of the store interface (ADR 91): taking and freeing the running
slots of a limited integration, fleet-wide, and how full each limit is. The semantics
are `tether.store.sql.step_limits`' and `sql.gate_slots`'; the gate that drives them is
`tether.flow.step_limits`."""

from __future__ import annotations

import abc

from tether.models.step_limits import StepLimit, StepLimitUsage


class StepLimitStore(abc.ABC):
    """The step limits' operations (a part of `Store`)."""

    @abc.abstractmethod
    async def acquire_step_slot(
        self, limit: StepLimit, task_id: str, seq: int, attempt: int, now: float
    ) -> bool:
        """Take a running slot of `limit` for step `seq` of `task_id` (running as
        `attempt`): the one handed to it, else a free one. False when all are held: the
        step is then in the limit's line, to be handed the next slot freed (its task
        is woken)."""

    @abc.abstractmethod
    async def release_step_slot(
        self, limit: StepLimit, task_id: str, seq: int, attempt: int, now: float
    ) -> None:
        """Free the slot the step held, handing it to the oldest step in line."""

    @abc.abstractmethod
    async def step_limit_usage(self, now: float, tenant: str | None = None) -> list[StepLimitUsage]:
        """Every limit the workers stored, with its running and waiting steps: of
        `tenant`'s tasks, or (None) of every tenant's."""
