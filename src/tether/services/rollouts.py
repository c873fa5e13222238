"""Workflow rollouts: start a canary, promote it, roll it back, clear, and the figures
that put a canary's tasks beside its stable version's (docs/rollouts.md, ADR 84). The
HTTP API (`/v1/workflows/{workflow}/rollout`), the CLI (`tether rollout`) and, through
the API, `tether.Client` call these.

A tenant's rollout routes that tenant's new tasks; the rollout of `EVERY_TENANT` ("*")
those of every tenant without one of its own. Through the API a caller manages its own
tenant's only; the fleet-wide one is for who holds the database (the CLI without
`--server`, or Python).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from tether.errors import TetherError
from tether.models.rollouts import EVERY_TENANT, Rollout, RolloutView
from tether.rollouts import RolloutBook

if TYPE_CHECKING:
    from tether.app import Tether

FIGURES_WINDOW = 86400.0
"""Without a canary, the figures count the tasks of the last this many seconds."""


class InvalidRollout(TetherError):
    """A rollout that cannot be: a version not registered, a share outside 0 to 1,
    nothing to promote."""


def _versions(app: Tether, workflow: str) -> list[int]:
    versions = app.workflows.versions_of(workflow)
    if not versions:
        app.registry_lookup(workflow)  # raises UnknownWorkflow, naming the known ones
    return versions


async def _current(app: Tether, tenant: str, workflow: str) -> Rollout | None:
    """The tenant's own rollout row (not the fleet-wide one it may fall back to)."""
    await app.open()
    for r in await app.store.list_rollouts():
        if (r.tenant, r.workflow) == (tenant, workflow):
            return r
    return None


async def _put(app: Tether, rollout: Rollout) -> Rollout:
    stored = await app.store.put_rollout(rollout)
    app.rollouts.changed(rollout.tenant, rollout.workflow, stored)
    return stored


async def canary(
    app: Tether,
    workflow: str,
    version: int,
    share: float,
    *,
    tenant: str = EVERY_TENANT,
    by: str | None = None,
) -> Rollout:
    """Send `share` (0 to 1) of new tasks to `version`; the others keep the version they
    start on now, pinned as `stable`. Changing the share of a running canary keeps its
    start (its figures go on counting)."""
    versions = _versions(app, workflow)
    if version not in versions:
        raise InvalidRollout(
            f"workflow {workflow!r} has no version {version} here (registered: "
            f"{', '.join(map(str, versions))})"
        )
    if not 0.0 <= share <= 1.0:
        raise InvalidRollout(f"a canary's share is between 0 and 1, not {share}")
    now = app.clock.now()
    old = await _current(app, tenant, workflow)
    stable = old.stable if old is not None else None
    if stable is None:
        below = [v for v in versions if v != version]
        stable = below[-1] if below else None
    if stable == version:
        raise InvalidRollout(f"version {version} of {workflow!r} is the stable one already")
    started = old.started_at if old is not None and old.canary == version else now
    rollout = Rollout(tenant, workflow, stable, version, share, started, by, now)
    return await _put(app, rollout)


async def promote(
    app: Tether, workflow: str, *, tenant: str = EVERY_TENANT, by: str | None = None
) -> Rollout:
    """Make the canary the stable version: every new task starts on it."""
    _versions(app, workflow)
    old = await _current(app, tenant, workflow)
    if old is None or old.canary is None:
        raise InvalidRollout(f"workflow {workflow!r} has no canary to promote")
    promoted = replace(
        old, stable=old.canary, canary=None, share=0.0, updated_by=by, updated_at=app.clock.now()
    )
    return await _put(app, promoted)


async def rollback(
    app: Tether, workflow: str, *, tenant: str = EVERY_TENANT, by: str | None = None
) -> Rollout:
    """End the canary: every new task starts on the stable version (which stays pinned,
    so a newer version registered stays unused until promoted). Tasks already on the
    canary finish on it."""
    _versions(app, workflow)
    old = await _current(app, tenant, workflow)
    if old is None or old.canary is None:
        raise InvalidRollout(f"workflow {workflow!r} has no canary to roll back")
    back = replace(old, canary=None, share=0.0, updated_by=by, updated_at=app.clock.now())
    return await _put(app, back)


async def clear(app: Tether, workflow: str, *, tenant: str = EVERY_TENANT) -> bool:
    """Remove the tenant's rollout: its new tasks start on the newest version again (or
    by the fleet-wide rollout). False when it had none."""
    await app.open()
    removed = await app.store.delete_rollout(tenant, workflow)
    app.rollouts.changed(tenant, workflow, None)
    return removed


async def show(
    app: Tether, workflow: str, tenant: str, *, since: float | None = None
) -> RolloutView:
    """The rollout that applies to `tenant`'s new tasks of `workflow`, and the figures of
    its tasks per version (`tenant` `EVERY_TENANT`: every tenant's tasks), created
    since `since` (default: the canary's start, else a day ago)."""
    versions = _versions(app, workflow)
    await app.open()
    read = RolloutBook()  # as read now, not this process's cached copy
    read.replace(await app.store.list_rollouts())
    rollout = read.lookup(tenant, workflow)
    if since is None:
        started = rollout.started_at if rollout is not None else None
        since = started if started is not None else app.clock.now() - FIGURES_WINDOW
    counted = None if tenant == EVERY_TENANT else tenant
    figures = await app.store.version_figures(counted, workflow, since)
    return RolloutView(workflow, tenant, rollout, versions, since, figures)


async def canaries(app: Tether, tenant: str | None) -> list[RolloutView]:
    """The running canaries with their figures: those routing `tenant`'s new tasks (its
    own rollout of a workflow, else the fleet-wide one), counting its tasks; or (None)
    every rollout with a canary, each counting the tasks of its tenant (every tenant's
    for a fleet-wide one). For `/metrics`."""
    await app.open()
    rows = await app.store.list_rollouts()
    chosen: list[Rollout] = []
    if tenant is None:
        chosen = [r for r in rows if r.canary is not None]
    else:
        read = RolloutBook()
        read.replace(rows)
        for workflow in sorted({r.workflow for r in rows}):
            found = read.lookup(tenant, workflow)
            if found is not None and found.canary is not None:
                chosen.append(found)
    views = []
    for r in chosen:
        since = r.started_at if r.started_at is not None else app.clock.now() - FIGURES_WINDOW
        counted = tenant if tenant is not None else (None if r.tenant == EVERY_TENANT else r.tenant)
        figures = await app.store.version_figures(counted, r.workflow, since)
        registered = app.workflows.versions_of(r.workflow)
        views.append(RolloutView(r.workflow, tenant or r.tenant, r, registered, since, figures))
    return views
