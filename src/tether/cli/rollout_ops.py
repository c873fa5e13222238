"""What `tether rollout` does, and the two ways to do it: on the database through
`tether.services.rollouts` (`LocalRollouts`: the tenant's rollout, or with
`every_tenant` the fleet-wide one), or over a server's HTTP API with
`tether.Client.rollouts` (`RemoteRollouts`: the credential's tenant's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from tether.cli.common import EXIT_USAGE, CLIError
from tether.client import NotFoundError
from tether.models.rollouts import EVERY_TENANT, RolloutView
from tether.services import rollouts as service

if TYPE_CHECKING:
    from tether.app import Tether
    from tether.client import Client


class RolloutOperations(Protocol):
    """The rollout commands' operations, for one tenant (or every tenant)."""

    async def show(self, workflow: str, every_tenant: bool) -> RolloutView: ...

    async def canary(
        self, workflow: str, version: int, share: float, every_tenant: bool
    ) -> RolloutView: ...

    async def promote(self, workflow: str, every_tenant: bool) -> RolloutView: ...

    async def rollback(self, workflow: str, every_tenant: bool) -> RolloutView: ...

    async def clear(self, workflow: str, every_tenant: bool) -> bool: ...


class LocalRollouts:
    """On `app`'s database, as `tenant` (or for every tenant); `identity` changes."""

    def __init__(self, app: Tether, tenant: str, identity: str) -> None:
        self.app, self.tenant, self.identity = app, tenant, identity

    def _scope(self, every_tenant: bool) -> str:
        return EVERY_TENANT if every_tenant else self.tenant

    async def show(self, workflow: str, every_tenant: bool) -> RolloutView:
        return await service.show(self.app, workflow, self._scope(every_tenant))

    async def canary(
        self, workflow: str, version: int, share: float, every_tenant: bool
    ) -> RolloutView:
        scope = self._scope(every_tenant)
        await service.canary(self.app, workflow, version, share, tenant=scope, by=self.identity)
        return await service.show(self.app, workflow, scope)

    async def promote(self, workflow: str, every_tenant: bool) -> RolloutView:
        scope = self._scope(every_tenant)
        await service.promote(self.app, workflow, tenant=scope, by=self.identity)
        return await service.show(self.app, workflow, scope)

    async def rollback(self, workflow: str, every_tenant: bool) -> RolloutView:
        scope = self._scope(every_tenant)
        await service.rollback(self.app, workflow, tenant=scope, by=self.identity)
        return await service.show(self.app, workflow, scope)

    async def clear(self, workflow: str, every_tenant: bool) -> bool:
        self.app.registry_lookup(workflow)
        return await service.clear(self.app, workflow, tenant=self._scope(every_tenant))


class RemoteRollouts:
    """Over HTTP with `client`, as its credential's tenant (never every tenant's)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @staticmethod
    def _tenant_only(every_tenant: bool) -> None:
        if every_tenant:
            raise CLIError(
                "--every-tenant changes the fleet-wide rollout: run it on the database "
                "(without --server)",
                EXIT_USAGE,
            )

    async def show(self, workflow: str, every_tenant: bool) -> RolloutView:
        self._tenant_only(every_tenant)
        return await self.client.rollouts.get(workflow)

    async def canary(
        self, workflow: str, version: int, share: float, every_tenant: bool
    ) -> RolloutView:
        self._tenant_only(every_tenant)
        return await self.client.rollouts.canary(workflow, version, share)

    async def promote(self, workflow: str, every_tenant: bool) -> RolloutView:
        self._tenant_only(every_tenant)
        return await self.client.rollouts.promote(workflow)

    async def rollback(self, workflow: str, every_tenant: bool) -> RolloutView:
        self._tenant_only(every_tenant)
        return await self.client.rollouts.rollback(workflow)

    async def clear(self, workflow: str, every_tenant: bool) -> bool:
        self._tenant_only(every_tenant)
        try:
            await self.client.rollouts.clear(workflow)
        except NotFoundError:
            return False
        return True
