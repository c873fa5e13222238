"""`SQLBreakers` and `SQLStepLimits`: the step gates' operations of the SQL stores,
mapped onto the shared logic in `tether.store.sql.breakers` and `sql.step_limits`. A
change that woke tasks tells this process's workers at once (others hear of it as of
any commit: NOTIFY, the SQLite doorbell)."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from tether.models.breakers import Breaker, BreakerPolicy
from tether.models.step_limits import StepLimit, StepLimitUsage
from tether.store.breakers import Announce, BreakerStore, Entry, Moved, Outcome
from tether.store.hub import Hub
from tether.store.sql import Conn, Dialect
from tether.store.sql import breakers as sqlb
from tether.store.sql import step_limits as sqll
from tether.store.step_limits import StepLimitStore

T = TypeVar("T")


class _Gates(abc.ABC):
    hub: Hub
    dialect: Dialect

    @abc.abstractmethod
    async def _run(
        self, work: Callable[[Conn], Awaitable[T]], *, write: bool = True, durable: bool = True
    ) -> T:
        """Run `work` in a transaction of its own (`SQLStore._run`)."""

    def _woke(self, queues: Sequence[str]) -> None:
        if queues:
            self.hub.notify_events()
            for queue in queues:
                self.hub.notify_work(queue)


class SQLBreakers(_Gates, BreakerStore, abc.ABC):
    """Breaker operations over `_run` (one transaction each)."""

    async def list_breakers(self) -> list[Breaker]:
        return await self._run(sqlb.list_breakers, write=False)

    async def enter_breaker(
        self,
        tenant: str,
        integration: str,
        policy: BreakerPolicy,
        task_id: str,
        seq: int,
        attempt: int,
        now: float,
    ) -> Entry:
        d = self.dialect
        return await self._run(
            lambda c: sqlb.enter(c, d, tenant, integration, policy, task_id, seq, attempt, now)
        )

    async def breaker_outcome(
        self,
        tenant: str,
        integration: str,
        policy: BreakerPolicy,
        result: Outcome,
        now: float,
        announce: Announce,
        *,
        successes: int = 0,
        probe: tuple[str, int, int] | None = None,
    ) -> Moved:
        d = self.dialect
        moved = await self._run(
            lambda c: sqlb.outcome(
                c,
                d,
                tenant,
                integration,
                policy,
                result,
                now,
                announce,
                successes=successes,
                probe=probe,
            )
        )
        self._woke(moved.queues)
        return moved

    async def set_breaker(
        self,
        scope: str,
        integration: str,
        open: bool,
        by: str | None,
        reason: str | None,
        now: float,
        announce: Announce,
    ) -> Moved:
        d = self.dialect
        moved = await self._run(
            lambda c: sqlb.set_breaker(c, d, scope, integration, open, by, reason, now, announce)
        )
        self._woke(moved.queues)
        return moved


class SQLStepLimits(_Gates, StepLimitStore, abc.ABC):
    """Step-limit operations over `_run` (one transaction each)."""

    @property
    def _slots_durable(self) -> bool:
        # On SQLite a slot needs no flush of its own, like a claim (ADR 75): the power
        # loss that would forget it stops, with it, every process that could hold it.
        # A PostgreSQL server can lose an unflushed commit while workers elsewhere run
        # on: a slot it forgot could be taken twice.
        return self.dialect.name != "sqlite"

    async def acquire_step_slot(
        self, limit: StepLimit, task_id: str, seq: int, attempt: int, now: float
    ) -> bool:
        d = self.dialect
        return await self._run(
            lambda c: sqll.acquire_step_slot(c, d, limit, task_id, seq, attempt, now),
            durable=self._slots_durable,
        )

    async def release_step_slot(
        self, limit: StepLimit, task_id: str, seq: int, attempt: int, now: float
    ) -> None:
        d = self.dialect
        queues = await self._run(
            lambda c: sqll.release_step_slot(c, d, limit, task_id, seq, attempt, now),
            durable=self._slots_durable,
        )
        self._woke(queues)

    async def step_limit_usage(self, now: float, tenant: str | None = None) -> list[StepLimitUsage]:
        return await self._run(lambda c: sqll.step_limit_usage(c, now, tenant), write=False)
