"""Canary rollouts over HTTP, on both backends (ADR 84): `/v1/workflows/{w}/rollout`,
`Client.rollouts`, the figures per version side by side, `/metrics`, roles, tenancy."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest

from api.live import LiveServer, auth, make_settings, token
from tether import Client
from tether.client import NotFoundError

PROBLEM = "application/problem+json"
SCRAPE = "scrape-token-for-the-rollout-test"


@pytest.fixture
async def server(store_url: str) -> AsyncIterator[LiveServer]:
    srv = LiveServer(make_settings(store_url, metrics_token=SCRAPE), workers=True)
    await asyncio.to_thread(srv.start)
    yield srv
    await asyncio.to_thread(srv.stop)


async def test_a_canary_over_http_side_by_side_with_its_stable_version(
    server: LiveServer,
) -> None:
    async with (
        Client(server.url, token=token("t1", roles=("admin",))) as admin,
        Client(server.url, token=token("t2", roles=("admin",))) as other,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        r = await http.put(
            "/v1/workflows/triage/rollout", json={"canary": 2, "share": 0.5}, headers=auth()
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["scope"], body["stable"], body["canary"], body["share"]) == (
            "tenant",
            1,
            2,
            0.5,
        )
        assert body["updated_by"] == "t1-user" and body["started_at"] is not None

        tasks = [await admin.submit("triage", {"n": i}) for i in range(60)]
        versions = Counter(t.workflow_version for t in tasks)
        assert set(versions) == {1, 2}, versions
        for t in tasks:
            await admin.wait(t.id, timeout=30)
        odd_on_canary = sum(1 for t in tasks if t.workflow_version == 2 and t.input["n"] % 2)

        view = await admin.rollouts.get("triage")
        by_version = {f.version: f for f in view.figures}
        assert {v: f.total for v, f in by_version.items()} == dict(versions)
        assert by_version[1].failure_rate == 0.0
        assert by_version[2].counts.get("failed", 0) == odd_on_canary
        assert view.rollout is not None and (view.rollout.stable, view.rollout.canary) == (1, 2)
        shown = (await http.get("/v1/workflows/triage/rollout", headers=auth())).json()
        roles = {v["version"]: v["role"] for v in shown["versions"]}
        assert roles == {1: "stable", 2: "canary"}

        # metrics: the tenant's canary for its own credential; every scope with the token
        mine = (await http.get("/metrics", headers=auth("t1", ("operator",)))).text
        assert 'tether_rollout_tasks{role="canary",scope="tenant",status="failed"' in mine
        assert "tether_rollout_failure_ratio" in mine
        theirs = (await http.get("/metrics", headers=auth("t2", ("operator",)))).text
        assert "tether_rollout_tasks{" not in theirs
        fleet = await http.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE}"})
        assert 'scope="t1"' in fleet.text

        # another tenant: no rollout, the newest version, none of t1's tasks counted
        theirs_view = await other.rollouts.get("triage")
        assert theirs_view.rollout is None and theirs_view.figures == []
        assert (await other.submit("triage", {"n": 0})).workflow_version == 2

        # promote, roll back, clear
        promoted = await admin.rollouts.promote("triage")
        assert promoted.rollout is not None and promoted.rollout.stable == 2
        assert (await admin.submit("triage", {"n": 0})).workflow_version == 2
        await admin.rollouts.canary("triage", 1, 1.0)
        back = await admin.rollouts.rollback("triage")
        assert back.rollout is not None and back.rollout.canary is None
        assert (await admin.submit("triage", {"n": 0})).workflow_version == 2
        await admin.rollouts.clear("triage")
        with pytest.raises(NotFoundError):
            await admin.rollouts.clear("triage")


async def test_rollout_refusals_roles_and_problems(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        put = "/v1/workflows/triage/rollout"
        for body, status, kind in (
            ({"canary": 3, "share": 0.1}, 409, "invalid-rollout"),
            ({"canary": 2, "share": 1.5}, 422, "invalid-request"),
            ({"canary": "2", "share": 0.1}, 422, "invalid-request"),
            ({"canary": 2}, 422, "invalid-request"),
        ):
            r = await http.put(put, json=body, headers=auth())
            assert r.status_code == status and r.headers["content-type"] == PROBLEM, r.text
            assert r.json()["type"].endswith(kind), r.text
        r = await http.put(
            "/v1/workflows/nope/rollout", json={"canary": 1, "share": 0.1}, headers=auth()
        )
        assert r.status_code == 404 and r.json()["type"].endswith("workflow-not-found")
        assert (await http.get("/v1/workflows/nope/rollout", headers=auth())).status_code == 404
        r = await http.post("/v1/workflows/triage/rollout/promote", headers=auth())
        assert r.status_code == 409 and "no canary to promote" in r.json()["detail"]
        for role in ("viewer", "operator"):
            assert (await http.get(put, headers=auth(roles=(role,)))).status_code == 200
            denied = await http.put(
                put, json={"canary": 2, "share": 0.1}, headers=auth(roles=(role,))
            )
            assert denied.status_code == 403 and "workflows:manage" in denied.json()["detail"]
        assert (await http.get(put, headers=auth(roles=("submitter",)))).status_code == 403
        assert (await http.get(put)).status_code == 401
