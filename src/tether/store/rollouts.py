"""The rollout part of the store interface: workflow rollouts and the figures that
compare a canary with its stable version (ADR 84)."""

from __future__ import annotations

import abc

from tether.models.rollouts import Rollout, VersionFigures


class RolloutStore(abc.ABC):
    """The rollouts' operations (a part of `Store`)."""

    @abc.abstractmethod
    async def list_rollouts(self) -> list[Rollout]:
        """Every rollout, of every tenant (they are few: the processes cache them)."""

    @abc.abstractmethod
    async def put_rollout(self, rollout: Rollout) -> Rollout:
        """Store `rollout`, replacing the tenant's rollout of that workflow."""

    @abc.abstractmethod
    async def delete_rollout(self, tenant: str, workflow: str) -> bool:
        """Remove the tenant's rollout of `workflow`; False when it had none."""

    @abc.abstractmethod
    async def version_figures(
        self, tenant: str | None, workflow: str, since: float
    ) -> list[VersionFigures]:
        """Per version of `workflow`, its tasks created at `since` or later by status:
        of `tenant` (None: of every tenant), by version."""
