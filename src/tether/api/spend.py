"""Spend endpoints (`/v1/spend`): what the caller's tenant spent on a UTC day, in all and
by workflow, against its budgets (ADR 92). A task's own spend is in `GET
/v1/tasks/{id}` (`spend`). Reading takes `tasks:read`: spend is the tenant's own.

Included by `tether.api.app.create_app` (listed in `OPTIONAL_ROUTERS`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AfterValidator

from tether.api.deps import require, tether_app
from tether.api.problems import responses
from tether.api.schemas import DaySpendOut
from tether.app import Tether
from tether.auth import Permission, Principal
from tether.models.budgets import check_day

router = APIRouter(prefix="/v1", tags=["spend"])


@router.get(
    "/spend",
    response_model=DaySpendOut,
    summary="A day's spend",
    responses=responses(401, 403, 422),
)
async def day_spend(
    who: Annotated[Principal, Depends(require(Permission.READ))],
    app: Annotated[Tether, Depends(tether_app)],
    day: Annotated[
        str | None,
        Query(
            description="The UTC day, YYYY-MM-DD (default: today)",
            json_schema_extra={"format": "date"},
        ),
        AfterValidator(lambda d: None if d is None else check_day(d)),
    ] = None,
) -> DaySpendOut:
    """The tenant's spend on `day`: dollars and tokens spent, reserved by running steps,
    and the daily limits in force, in all and per workflow."""
    return DaySpendOut.of(await app.spend(day=day, tenant=who.tenant))
