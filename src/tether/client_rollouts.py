"""`Client.rollouts`: the rollout endpoints of the HTTP API, for `tether.Client`.

async with Client(url, token=TOKEN) as client:
    await client.rollouts.canary("triage", 2, 0.05)       # 5% of new tasks on version 2
    view = await client.rollouts.get("triage")            # figures per version
    await client.rollouts.promote("triage")               # or .rollback("triage")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from tether.models.rollouts import EVERY_TENANT, Rollout, RolloutView, VersionFigures
from tether.models.times import parse_time

Request = Callable[..., Awaitable[httpx.Response]]


def rollout_view_from_json(data: Mapping[str, Any], tenant: str = "") -> RolloutView:
    """A `RolloutView` from the API's JSON (`tenant`: the caller's, not in the body)."""
    scope = data.get("scope")
    rollout = None
    if scope is not None:
        rollout = Rollout(
            tenant=tenant if scope == "tenant" else EVERY_TENANT,
            workflow=data["workflow"],
            stable=data.get("stable"),
            canary=data.get("canary"),
            share=float(data.get("share") or 0.0),
            started_at=None if data.get("started_at") is None else parse_time(data["started_at"]),
            updated_by=data.get("updated_by"),
            updated_at=0.0 if data.get("updated_at") is None else parse_time(data["updated_at"]),
        )
    versions = data.get("versions") or []
    return RolloutView(
        workflow=data["workflow"],
        tenant=tenant,
        rollout=rollout,
        registered=[v["version"] for v in versions if v.get("registered")],
        since=parse_time(data["since"]),
        figures=[VersionFigures(v["version"], dict(v["counts"])) for v in versions if v["counts"]],
    )


class RolloutsClient:
    """Rollouts over the API (`Client.rollouts`), for the credential's tenant. Reads
    retry like the rest of the client; the changes too, as each sets a state (sending
    one twice sets it twice)."""

    def __init__(self, request: Request) -> None:
        self._request = request

    async def _view(self, method: str, path: str, **kwargs: Any) -> RolloutView:
        response = await self._request(method, f"/v1/workflows/{path}", retry=True, **kwargs)
        return rollout_view_from_json(response.json())

    async def get(self, workflow: str) -> RolloutView:
        """The rollout that routes the tenant's new tasks of `workflow`, with the figures
        per version (`ApiError` 422 for an unknown workflow)."""
        return await self._view("GET", f"{workflow}/rollout")

    async def canary(self, workflow: str, version: int, share: float) -> RolloutView:
        """Send `share` (0 to 1) of the tenant's new tasks to `version`."""
        body = {"canary": version, "share": share}
        return await self._view("PUT", f"{workflow}/rollout", json=body)

    async def promote(self, workflow: str) -> RolloutView:
        """The canary becomes the stable version."""
        return await self._view("POST", f"{workflow}/rollout/promote")

    async def rollback(self, workflow: str) -> RolloutView:
        """End the canary: new tasks start on the stable version."""
        return await self._view("POST", f"{workflow}/rollout/rollback")

    async def clear(self, workflow: str) -> None:
        """Remove the tenant's rollout (`NotFoundError` when it had none)."""
        await self._request("DELETE", f"/v1/workflows/{workflow}/rollout", retry=True)
