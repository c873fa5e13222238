"""What `tether breaker` does, and the two ways to do it: on the database through
`tether.services.breakers` (`LocalBreakers`: as `--tenant`'s steps meet them, or with
`every_tenant` the fleet-wide breakers), or over a server's HTTP API with
`tether.Client.breakers` (`RemoteBreakers`: the credential's tenant's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from tether.cli.common import EXIT_USAGE, CLIError
from tether.models.breakers import FLEET, BreakerView
from tether.services import breakers as service

if TYPE_CHECKING:
    from tether.app import Tether
    from tether.client import Client


class BreakerOperations(Protocol):
    """The breaker commands' operations, for one tenant (or the fleet's breakers)."""

    async def list(self, every_tenant: bool) -> list[BreakerView]: ...

    async def show(self, integration: str, every_tenant: bool) -> BreakerView: ...

    async def open(
        self, integration: str, reason: str | None, every_tenant: bool
    ) -> BreakerView: ...

    async def close(
        self, integration: str, reason: str | None, every_tenant: bool
    ) -> BreakerView: ...


class LocalBreakers:
    """On `app`'s database, as `tenant` (or the fleet's); `identity` changes them."""

    def __init__(self, app: Tether, tenant: str, identity: str) -> None:
        self.app, self.tenant, self.identity = app, tenant, identity

    def _scope(self, every_tenant: bool) -> str:
        return FLEET if every_tenant else self.tenant

    async def list(self, every_tenant: bool) -> list[BreakerView]:
        return await service.views(self.app, self._scope(every_tenant))

    async def show(self, integration: str, every_tenant: bool) -> BreakerView:
        return await service.view(self.app, integration, self._scope(every_tenant))

    async def open(self, integration: str, reason: str | None, every_tenant: bool) -> BreakerView:
        return await service.open_breaker(
            self.app, integration, tenant=self._scope(every_tenant), by=self.identity, reason=reason
        )

    async def close(self, integration: str, reason: str | None, every_tenant: bool) -> BreakerView:
        return await service.close_breaker(
            self.app, integration, tenant=self._scope(every_tenant), by=self.identity, reason=reason
        )


class RemoteBreakers:
    """Over HTTP with `client`, as its credential's tenant (never the fleet's)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @staticmethod
    def _tenant_only(every_tenant: bool) -> None:
        if every_tenant:
            raise CLIError(
                "--every-tenant acts on the fleet-wide breakers: run it on the database "
                "(without --server)",
                EXIT_USAGE,
            )

    async def list(self, every_tenant: bool) -> list[BreakerView]:
        self._tenant_only(every_tenant)
        return await self.client.breakers.list()

    async def show(self, integration: str, every_tenant: bool) -> BreakerView:
        self._tenant_only(every_tenant)
        return await self.client.breakers.get(integration)

    async def open(self, integration: str, reason: str | None, every_tenant: bool) -> BreakerView:
        self._tenant_only(every_tenant)
        return await self.client.breakers.open(integration, reason)

    async def close(self, integration: str, reason: str | None, every_tenant: bool) -> BreakerView:
        self._tenant_only(every_tenant)
        return await self.client.breakers.close(integration, reason)
