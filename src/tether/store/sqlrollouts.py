"""`SQLRollouts`: the rollout operations of the SQL stores (`RolloutStore`), mapped onto
the shared logic in `tether.store.sql.rollouts`."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tether.models.rollouts import Rollout, VersionFigures
from tether.store.rollouts import RolloutStore
from tether.store.sql import Conn
from tether.store.sql import rollouts as sqlr

T = TypeVar("T")


class SQLRollouts(RolloutStore, abc.ABC):
    """Rollout operations over `_run` (one transaction each)."""

    @abc.abstractmethod
    async def _run(self, work: Callable[[Conn], Awaitable[T]], *, write: bool = True) -> T:
        """Run `work` in a transaction of its own (`SQLStore._run`)."""

    async def list_rollouts(self) -> list[Rollout]:
        return await self._run(sqlr.list_rollouts, write=False)

    async def put_rollout(self, rollout: Rollout) -> Rollout:
        return await self._run(lambda c: sqlr.put_rollout(c, rollout))

    async def delete_rollout(self, tenant: str, workflow: str) -> bool:
        return await self._run(lambda c: sqlr.delete_rollout(c, tenant, workflow))

    async def version_figures(
        self, tenant: str | None, workflow: str, since: float
    ) -> list[VersionFigures]:
        return await self._run(
            lambda c: sqlr.version_figures(c, tenant, workflow, since), write=False
        )
