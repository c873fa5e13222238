"""Rollout endpoints (`/v1/workflows/{workflow}/rollout`): a workflow's canary for the
caller's tenant, its figures per version, and promoting or rolling it back (ADR 84).

Included by `tether.api.app.create_app` (listed in `OPTIONAL_ROUTERS`). A caller sees
and changes its own tenant's rollout only (a fleet-wide one, for every tenant, is shown
when it applies but is changed only by who holds the database: docs/rollouts.md).
Reading takes `workflows:read`, changing `workflows:manage`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Body, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from tether.api import problem_types
from tether.api.deps import require, tether_app
from tether.api.problems import ProblemError, responses
from tether.api.schemas import WHOLE, Time
from tether.app import Tether
from tether.auth import Permission, Principal
from tether.models.rollouts import RolloutView
from tether.services import rollouts
from tether.services.rollouts import InvalidRollout

router = APIRouter(prefix="/v1", tags=["workflows"])

AUTH = (401, 403)
Workflow = Annotated[str, Path(min_length=1, max_length=200, description="Workflow name")]
Read = Annotated[Principal, Depends(require(Permission.WORKFLOWS_READ))]
Manage = Annotated[Principal, Depends(require(Permission.WORKFLOWS_MANAGE))]
App = Annotated[Tether, Depends(tether_app)]
T = TypeVar("T")


class CanaryIn(BaseModel):
    """Start a canary, or change its share."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"canary": 2, "share": 0.05}]}
    )

    canary: Annotated[int, Field(ge=1, le=2**31 - 1), WHOLE] = Field(
        description="The version a share of new tasks start on"
    )
    share: float = Field(ge=0.0, le=1.0, description="That share, 0 to 1 (by task id)")


class VersionOut(BaseModel):
    """How the tasks of one version fare, created since `since`."""

    version: int
    role: str | None = Field(description="`stable`, `canary`, or null (neither)")
    registered: bool = Field(description="Whether this server registers the version")
    counts: dict[str, int] = Field(description="Tasks by status")
    total: int
    failure_rate: float | None = Field(description="Failed over ended; null before any ended")


class RolloutOut(BaseModel):
    """The rollout that routes the caller's tenant's new tasks of a workflow."""

    workflow: str
    scope: str | None = Field(
        description="`tenant` (the caller's own), `all` (the fleet-wide one), or null: "
        "no rollout, new tasks start on the newest version"
    )
    stable: int | None = None
    canary: int | None = None
    share: float = 0.0
    started_at: Time | None = None
    updated_by: str | None = None
    updated_at: Time | None = None
    since: Time = Field(description="The figures count tasks created since then")
    versions: list[VersionOut]

    @classmethod
    def of(cls, view: RolloutView) -> RolloutOut:
        r = view.rollout
        stable = r.stable if r is not None else None
        if stable is None:
            stable = next(
                (v for v in reversed(view.registered) if r is None or v != r.canary), None
            )
        canary = r.canary if r is not None else None
        figures = {f.version: f for f in view.figures}
        shown = sorted(set(figures) | set(view.registered))
        return cls(
            workflow=view.workflow,
            scope=None if r is None else ("tenant" if r.tenant == view.tenant else "all"),
            stable=stable,
            canary=canary,
            share=0.0 if r is None else r.share,
            started_at=None if r is None else r.started_at,
            updated_by=None if r is None else r.updated_by,
            updated_at=None if r is None else r.updated_at,
            since=view.since,
            versions=[
                VersionOut(
                    version=v,
                    role="canary" if v == canary else "stable" if v == stable else None,
                    registered=v in view.registered,
                    counts=figures[v].counts if v in figures else {},
                    total=figures[v].total if v in figures else 0,
                    failure_rate=figures[v].failure_rate if v in figures else None,
                )
                for v in shown
            ],
        )


def _registered(app: Tether, workflow: str) -> None:
    """404 for a workflow the server does not register (the path names a resource)."""
    if not app.workflows.versions_of(workflow):
        raise ProblemError(
            problem_types.WORKFLOW_NOT_FOUND, f"no workflow {workflow!r} is registered here"
        )


async def _shown(app: Tether, workflow: str, tenant: str, change: Awaitable[object]) -> RolloutOut:
    try:
        await change
    except InvalidRollout as exc:
        raise ProblemError(problem_types.INVALID_ROLLOUT, str(exc)) from None
    return RolloutOut.of(await rollouts.show(app, workflow, tenant))


@router.get(
    "/workflows/{workflow}/rollout",
    response_model=RolloutOut,
    summary="A workflow's rollout and its versions' figures",
    responses=responses(*AUTH, 404, 422),
)
async def get_rollout(workflow: Workflow, who: Read, app: App) -> RolloutOut:
    """The rollout that routes the tenant's new tasks of the workflow (its own, else the
    fleet-wide one), and per version the tenant's tasks created since the canary began
    (else in the last day) by status, with the failure rate: a bad canary shows here.
    An unknown workflow: 404."""
    _registered(app, workflow)
    return RolloutOut.of(await rollouts.show(app, workflow, who.tenant))


@router.put(
    "/workflows/{workflow}/rollout",
    response_model=RolloutOut,
    summary="Start a canary or change its share",
    responses=responses(400, *AUTH, 404, 409, 413, 415, 422),
)
async def put_canary(
    workflow: Workflow, body: Annotated[CanaryIn, Body()], who: Manage, app: App
) -> RolloutOut:
    """Send `share` of the tenant's new tasks to version `canary` (chosen by task id);
    the others keep the version they start on now, pinned as `stable`. Tasks already
    started finish on their version. 409 for a version not registered or the stable
    one."""
    _registered(app, workflow)
    change = rollouts.canary(
        app, workflow, body.canary, body.share, tenant=who.tenant, by=who.subject
    )
    return await _shown(app, workflow, who.tenant, change)


@router.post(
    "/workflows/{workflow}/rollout/promote",
    response_model=RolloutOut,
    summary="Promote the canary",
    responses=responses(*AUTH, 404, 409, 422),
)
async def promote(workflow: Workflow, who: Manage, app: App) -> RolloutOut:
    """The canary becomes the stable version: every new task of the tenant starts on it.
    409 without a canary."""
    _registered(app, workflow)
    change = rollouts.promote(app, workflow, tenant=who.tenant, by=who.subject)
    return await _shown(app, workflow, who.tenant, change)


@router.post(
    "/workflows/{workflow}/rollout/rollback",
    response_model=RolloutOut,
    summary="Roll the canary back",
    responses=responses(*AUTH, 404, 409, 422),
)
async def rollback(workflow: Workflow, who: Manage, app: App) -> RolloutOut:
    """End the canary: every new task of the tenant starts on the stable version (tasks
    on the canary finish on it). 409 without a canary."""
    _registered(app, workflow)
    change = rollouts.rollback(app, workflow, tenant=who.tenant, by=who.subject)
    return await _shown(app, workflow, who.tenant, change)


@router.delete(
    "/workflows/{workflow}/rollout",
    status_code=204,
    response_class=Response,
    summary="Remove the tenant's rollout",
    responses=responses(*AUTH, 404, 422),
)
async def clear(workflow: Workflow, who: Manage, app: App) -> Response:
    """The tenant's new tasks start on the newest version again (or by the fleet-wide
    rollout). 404 when the tenant had none."""
    _registered(app, workflow)
    if not await rollouts.clear(app, workflow, tenant=who.tenant):
        raise ProblemError(problem_types.NOT_FOUND, "the tenant has no rollout of this workflow")
    return Response(status_code=204)


__all__ = ["CanaryIn", "RolloutOut", "VersionOut", "router"]
