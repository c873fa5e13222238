"""Circuit breakers: their state as each tenant's steps meet it, and opening or closing
one by hand (docs/flow-control.md, ADR 91). The HTTP API (`/v1/breakers`), the CLI
(`tether breaker`) and, through the API, `tether.Client` call these.

A tenant sees every configured breaker as it applies to its steps: the fleet-wide one
(state and counts only: no error, no other tenant's name) and its own. Through the API a
caller opens and closes its own tenant's breaker only: opening holds its own steps off
the integration (the fleet's are not touched), closing ends its own hold. The fleet-wide
breaker (`FLEET`) is opened and closed by who holds the database (the CLI without
`--server`, Python).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tether import storable
from tether.errors import BreakerConflict, BreakerNotFound
from tether.models.breakers import FLEET, Breaker, BreakerState, BreakerView

if TYPE_CHECKING:
    from tether.app import Tether


def _policy_of(app: Tether, integration: str) -> None:
    if integration not in app.breakers.policies:
        known = ", ".join(sorted(app.breakers.policies)) or "none"
        raise BreakerNotFound(
            f"no circuit breaker is configured for {integration!r} (configured: {known})"
        )


def _view(app: Tether, rows: list[Breaker], integration: str, tenant: str) -> BreakerView:
    found = {(b.tenant, b.integration): b for b in rows}
    return BreakerView(
        integration,
        tenant,
        app.breakers.policies[integration],
        found.get((FLEET, integration)),
        None if tenant == FLEET else found.get((tenant, integration)),
    )


async def views(app: Tether, tenant: str) -> list[BreakerView]:
    """Every configured breaker as it applies to `tenant`'s steps (`FLEET`: the
    fleet-wide breakers alone), by integration, as the database holds them now."""
    await app.open()
    rows = await app.store.list_breakers()
    return [_view(app, rows, name, tenant) for name in sorted(app.breakers.policies)]


async def every_breaker(app: Tether) -> list[Breaker]:
    """Every breaker of a configured integration, of every scope (a fleet-wide one with
    no row yet shown closed): the deployment's operators' figures (`/metrics`)."""
    await app.open()
    rows = [b for b in await app.store.list_breakers() if b.integration in app.breakers.policies]
    have = {b.integration for b in rows if b.tenant == FLEET}
    rows += [Breaker(FLEET, name) for name in app.breakers.policies if name not in have]
    return sorted(rows, key=lambda b: (b.integration, b.tenant))


async def view(app: Tether, integration: str, tenant: str) -> BreakerView:
    """The breaker of `integration` as it applies to `tenant`'s steps; raises
    `BreakerNotFound` for an integration with no breaker configured."""
    _policy_of(app, integration)
    await app.open()
    return _view(app, await app.store.list_breakers(), integration, tenant)


async def open_breaker(
    app: Tether,
    integration: str,
    *,
    tenant: str = FLEET,
    by: str | None = None,
    reason: str | None = None,
) -> BreakerView:
    """Open `tenant`'s breaker of `integration` by hand (`FLEET`: every tenant's): the
    steps it governs wait until it is closed by hand, with no probes meanwhile. Opening
    a closed breaker is announced (`circuit.opened`)."""
    _policy_of(app, integration)
    storable.check_text(reason, "reason")
    storable.check_text(by, "by")
    await app.open()
    moved = await app.store.set_breaker(
        tenant, integration, True, by, reason, app.clock.now(), app.breakers.announce
    )
    app.breakers.changed(moved.breaker)
    return await view(app, integration, tenant)


async def close_breaker(
    app: Tether,
    integration: str,
    *,
    tenant: str = FLEET,
    by: str | None = None,
    reason: str | None = None,
) -> BreakerView:
    """Close `tenant`'s breaker of `integration` by hand (`FLEET`: the fleet-wide one),
    whatever opened it: it counts afresh, and the steps it held are woken. Raises
    `BreakerConflict` when a tenant asks while only the fleet-wide breaker is open."""
    _policy_of(app, integration)
    storable.check_text(reason, "reason")
    storable.check_text(by, "by")
    await app.open()
    if tenant != FLEET:
        now = await view(app, integration, tenant)
        own_open = now.own is not None and now.own.state != BreakerState.CLOSED
        fleet_open = now.fleet is not None and now.fleet.state != BreakerState.CLOSED
        if fleet_open and not own_open:
            raise BreakerConflict(
                f"the circuit breaker of {integration!r} is open for every tenant; it closes "
                "after a successful probe, or by hand on the database (tether breaker close "
                f"{integration} --every-tenant)"
            )
    moved = await app.store.set_breaker(
        tenant, integration, False, by, reason, app.clock.now(), app.breakers.announce
    )
    app.breakers.changed(moved.breaker)
    return await view(app, integration, tenant)


__all__ = ["close_breaker", "every_breaker", "open_breaker", "view", "views"]
