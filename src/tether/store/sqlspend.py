"""`SQLSpend`: the spend ledger of the SQL stores (`SpendStore`), mapped onto the shared
logic in `tether.store.sql.spend`."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tether.models import Approval, DaySpend, SpendLine
from tether.models.budgets import Scope
from tether.store.hub import Hub
from tether.store.spend import HoldResult, SpendClaim, SpendReport, SpendStore
from tether.store.sql import Conn, Dialect
from tether.store.sql import spend as sqls

T = TypeVar("T")


class SQLSpend(SpendStore, abc.ABC):
    """Ledger operations over `_run` (one transaction each)."""

    dialect: Dialect
    hub: Hub

    @abc.abstractmethod
    async def _run(self, work: Callable[[Conn], Awaitable[T]], *, write: bool = True) -> T:
        """Run `work` in a transaction of its own (`SQLStore._run`)."""

    async def reserve(self, claim: SpendClaim, now: float) -> SpendLine | None:
        d = self.dialect
        booking = bool(claim.estimate.nanos or claim.estimate.tokens)  # else only a check
        try:
            await self._run(lambda c: sqls.reserve(c, d, claim, now), write=booking)
        except sqls.Short as short:  # rolled back: nothing of it was booked
            return sqls.line_from_row(short.row)
        return None

    async def release_dead(self, tenant: str, day: str, task_id: str | None, now: float) -> int:
        return await self._run(lambda c: sqls.release_dead(c, tenant, day, task_id, now))

    async def settle(self, report: SpendReport, now: float) -> None:
        await self._run(lambda c: sqls.settle(c, report, now))

    async def hold_for_raise(
        self, claim: SpendClaim, scope: Scope, approval: Approval, now: float
    ) -> HoldResult:
        d = self.dialect
        result = await self._run(lambda c: sqls.hold_for_raise(c, d, claim, scope, approval, now))
        self.hub.notify_events()  # the approval's request is an event
        return result

    async def task_spend(self, task_id: str, tenant: str) -> SpendLine | None:
        return await self._run(lambda c: sqls.task_spend(c, task_id, tenant), write=False)

    async def day_spend(self, tenant: str, day: str) -> DaySpend:
        return await self._run(lambda c: sqls.day_spend(c, tenant, day), write=False)
