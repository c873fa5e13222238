"""`Client.breakers`: the circuit-breaker endpoints of the HTTP API, for
`tether.Client` (docs/flow-control.md).

async with Client(url, token=TOKEN) as client:
    for view in await client.breakers.list():            # as the tenant's steps meet them
        print(view.integration, view.state)
    await client.breakers.open("crm", reason="CRM upgrade")  # the tenant's own hold
    await client.breakers.close("crm")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from tether.models.breakers import FLEET, Breaker, BreakerPolicy, BreakerState, BreakerView
from tether.models.times import parse_time

Request = Callable[..., Awaitable[httpx.Response]]


def _time(value: Any) -> float | None:
    return None if value is None else parse_time(value)


def _breaker(data: Mapping[str, Any] | None, tenant: str, integration: str) -> Breaker | None:
    if data is None:
        return None
    return Breaker(
        tenant=tenant,
        integration=integration,
        state=BreakerState(data["state"]),
        manual=bool(data["manual"]),
        failures=int(data["failures"]),
        window_calls=int(data["window_calls"]),
        window_failures=int(data["window_failures"]),
        opened_at=_time(data.get("opened_at")),
        open_until=_time(data.get("open_until")),
        opens=int(data["opens"]),
        reason=data.get("reason"),
        updated_by=data.get("updated_by"),
        updated_at=parse_time(data["updated_at"]),
    )


def breaker_view_from_json(data: Mapping[str, Any], tenant: str = "") -> BreakerView:
    """A `BreakerView` from the API's JSON (`tenant`: the caller's, not in the body).
    The window counts are the server's estimate of the last window, kept as the
    current window's."""
    p = data["policy"]
    name = str(data["integration"])
    policy = BreakerPolicy(
        failures=p["failures"],
        failure_rate=p["failure_rate"],
        window=float(p["window"]),
        min_calls=int(p["min_calls"]),
        cool_down=float(p["cool_down"]),
        probes=int(p["probes"]),
        per_tenant=bool(p["per_tenant"]),
    )
    return BreakerView(
        name,
        tenant,
        policy,
        _breaker(data.get("fleet"), FLEET, name),
        _breaker(data.get("tenant"), tenant, name),
    )


class BreakersClient:
    """Circuit breakers over the API (`Client.breakers`), as the credential's tenant's
    steps meet them. Reads retry like the rest of the client; opening and closing too,
    as each sets a state (sending one twice sets it twice)."""

    def __init__(self, request: Request) -> None:
        self._request = request

    async def list(self) -> list[BreakerView]:
        """Every breaker the server configures."""
        response = await self._request("GET", "/v1/breakers", retry=True)
        return [breaker_view_from_json(item) for item in response.json()["items"]]

    async def get(self, integration: str) -> BreakerView:
        """The breaker of `integration` (`NotFoundError` when none is configured)."""
        response = await self._request("GET", f"/v1/breakers/{integration}", retry=True)
        return breaker_view_from_json(response.json())

    async def open(self, integration: str, reason: str | None = None) -> BreakerView:
        """Hold the tenant's steps off `integration` until closed by hand."""
        return await self._change(integration, "open", reason)

    async def close(self, integration: str, reason: str | None = None) -> BreakerView:
        """Close the tenant's own breaker of `integration` (`ConflictError` when only
        the fleet-wide one is open)."""
        return await self._change(integration, "close", reason)

    async def _change(self, integration: str, verb: str, reason: str | None) -> BreakerView:
        body = {} if reason is None else {"reason": reason}
        response = await self._request(
            "POST", f"/v1/breakers/{integration}:{verb}", retry=True, json=body
        )
        return breaker_view_from_json(response.json())
