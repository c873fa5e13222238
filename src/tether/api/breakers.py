"""Circuit-breaker endpoints (`/v1/breakers`): every configured breaker as it applies to
the caller's tenant's steps, and opening or closing the tenant's own by hand (ADR 91).

Included by `tether.api.app.create_app` (listed in `OPTIONAL_ROUTERS`). A caller sees
the fleet-wide breaker of each integration (its state and counts: no error, nothing of
another tenant) and its own tenant's; it opens and closes its own only (the fleet-wide
one is changed by who holds the database: docs/flow-control.md). Reading takes
`breakers:read`, changing `breakers:operate`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, ConfigDict, Field
from starlette.convertors import StringConvertor, register_url_convertor

from tether.api import problem_types
from tether.api.deps import require, tether_app
from tether.api.problems import ProblemError, responses
from tether.api.schemas import Time
from tether.app import Tether
from tether.auth import Permission, Principal
from tether.errors import BreakerConflict, BreakerNotFound
from tether.models.breakers import Breaker, BreakerPolicy, BreakerView
from tether.models.steps import INTEGRATION_NAME
from tether.services import breakers

router = APIRouter(prefix="/v1", tags=["breakers"])


class _Segment(StringConvertor):
    """A path segment without `:`: `/breakers/crm:open` is the action route's, never
    `GET /breakers/{integration}` with integration `crm:open`."""

    regex = "[^/:]+"


register_url_convertor("integration", _Segment())

AUTH = (401, 403)
Integration = Annotated[
    str,
    Path(
        pattern=f"^{INTEGRATION_NAME.pattern}$",
        description="The integration the breaker governs (the steps' `integration`)",
    ),
]
Read = Annotated[Principal, Depends(require(Permission.BREAKERS_READ))]
Operate = Annotated[Principal, Depends(require(Permission.BREAKERS_OPERATE))]
App = Annotated[Tether, Depends(tether_app)]


class BreakerChangeIn(BaseModel):
    """Why a breaker is opened or closed by hand (kept with it)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"reason": "CRM upgrade"}]}
    )

    reason: str | None = Field(default=None, min_length=1, max_length=500)


class PolicyOut(BaseModel):
    """When the breaker opens and how it probes (the server's configuration)."""

    failures: int | None = Field(description="Transient failures in a row that open it")
    failure_rate: float | None = Field(
        description="Share of the window's calls whose transient failure opens it"
    )
    window: float = Field(description="Seconds of calls the failure rate is taken over")
    min_calls: int = Field(description="Calls in the window below which the rate does not open it")
    cool_down: float = Field(description="Seconds it stays open before a probe")
    probes: int = Field(description="Probes at a time, fleet-wide, while half-open")
    per_tenant: bool = Field(description="One breaker per tenant instead of one for the fleet")

    @classmethod
    def of(cls, p: BreakerPolicy) -> PolicyOut:
        return cls(
            failures=p.failures,
            failure_rate=p.failure_rate,
            window=p.window,
            min_calls=p.min_calls,
            cool_down=p.cool_down,
            probes=p.probes,
            per_tenant=p.per_tenant,
        )


class BreakerStateOut(BaseModel):
    """One breaker: the fleet's, or the tenant's own."""

    state: str = Field(description="`closed`, `open` or `half_open`")
    manual: bool = Field(description="Opened by hand: open until closed by hand, no probes")
    failures: int = Field(description="Transient failures in a row while closed")
    window_calls: int = Field(description="Calls counted in the last window (an estimate)")
    window_failures: int = Field(description="Of which transient failures")
    opened_at: Time | None = None
    open_until: Time | None = Field(
        default=None, description="When the cool-down ends (null: closed, or opened by hand)"
    )
    opens: int = Field(description="How many times it opened")
    reason: str | None = Field(description="Why it opened (the rule, a failed probe, a person)")
    updated_by: str | None = Field(description="Who changed it by hand last (null: no one)")
    updated_at: Time

    @classmethod
    def of(cls, b: Breaker, policy: BreakerPolicy, now: float) -> BreakerStateOut:
        calls, failed = b.rate(now, policy.window)
        return cls(
            state=str(b.state),
            manual=b.manual,
            failures=b.failures,
            window_calls=round(calls),
            window_failures=round(failed),
            opened_at=b.opened_at,
            open_until=b.open_until,
            opens=b.opens,
            reason=b.reason,
            updated_by=b.updated_by,
            updated_at=b.updated_at,
        )


class BreakerOut(BaseModel):
    """A configured breaker as the caller's tenant's steps meet it."""

    integration: str
    state: str = Field(
        description="What a step meets: `open` if either breaker is open, else `half_open` "
        "if either is, else `closed`"
    )
    policy: PolicyOut
    fleet: BreakerStateOut | None = Field(
        description="The fleet-wide breaker (null: it never failed nor opened)"
    )
    tenant: BreakerStateOut | None = Field(
        description="The tenant's own (a per-tenant policy's, or a hold opened by hand)"
    )

    @classmethod
    def of(cls, view: BreakerView, now: float) -> BreakerOut:
        p = view.policy
        return cls(
            integration=view.integration,
            state=str(view.state),
            policy=PolicyOut.of(p),
            fleet=None if view.fleet is None else BreakerStateOut.of(view.fleet, p, now),
            tenant=None if view.own is None else BreakerStateOut.of(view.own, p, now),
        )


class BreakerList(BaseModel):
    """Every breaker the server configures, by integration."""

    items: list[BreakerOut]


async def _shown(app: Tether, change: Awaitable[BreakerView]) -> BreakerOut:
    try:
        view = await change
    except BreakerNotFound as exc:
        raise ProblemError(problem_types.BREAKER_NOT_FOUND, str(exc)) from None
    except BreakerConflict as exc:
        raise ProblemError(problem_types.BREAKER_CONFLICT, str(exc)) from None
    return BreakerOut.of(view, app.clock.now())


@router.get(
    "/breakers",
    response_model=BreakerList,
    summary="List circuit breakers",
    responses=responses(*AUTH),
)
async def list_breakers(who: Read, app: App) -> BreakerList:
    """Every configured breaker, as it applies to the tenant's steps."""
    now = app.clock.now()
    return BreakerList(items=[BreakerOut.of(v, now) for v in await breakers.views(app, who.tenant)])


@router.get(
    "/breakers/{integration:integration}",
    response_model=BreakerOut,
    summary="Get a circuit breaker",
    responses=responses(*AUTH, 404, 422),
)
async def get_breaker(integration: Integration, who: Read, app: App) -> BreakerOut:
    """The breaker of an integration as the tenant's steps meet it. An integration with
    no breaker configured: 404."""
    return await _shown(app, breakers.view(app, integration, who.tenant))


@router.post(
    "/breakers/{integration:integration}:open",
    response_model=BreakerOut,
    summary="Open the tenant's circuit breaker by hand",
    responses=responses(400, *AUTH, 404, 413, 415, 422),
)
async def open_breaker(
    integration: Integration,
    who: Operate,
    app: App,
    body: Annotated[BreakerChangeIn | None, Body()] = None,
) -> BreakerOut:
    """Hold the tenant's steps off the integration: they wait (`circuit_open`) until the
    breaker is closed by hand, with no probes meanwhile; other tenants are not touched.
    Opening a closed breaker notifies (`circuit.opened`)."""
    reason = None if body is None else body.reason
    change = breakers.open_breaker(
        app, integration, tenant=who.tenant, by=who.subject, reason=reason
    )
    return await _shown(app, change)


@router.post(
    "/breakers/{integration:integration}:close",
    response_model=BreakerOut,
    summary="Close the tenant's circuit breaker by hand",
    responses=responses(400, *AUTH, 404, 409, 413, 415, 422),
)
async def close_breaker(
    integration: Integration,
    who: Operate,
    app: App,
    body: Annotated[BreakerChangeIn | None, Body()] = None,
) -> BreakerOut:
    """Close the tenant's own breaker, whatever opened it: it counts afresh and the steps
    it held run. 409 when only the fleet-wide breaker is open (it closes after a
    successful probe, or by hand on the database)."""
    reason = None if body is None else body.reason
    change = breakers.close_breaker(
        app, integration, tenant=who.tenant, by=who.subject, reason=reason
    )
    return await _shown(app, change)


__all__ = ["BreakerChangeIn", "BreakerList", "BreakerOut", "BreakerStateOut", "router"]
