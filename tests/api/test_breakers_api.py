"""Circuit breakers over HTTP, on both backends (ADR 91): `/v1/breakers`,
`Client.breakers`, `/metrics`, roles, and tenancy: every tenant sees the fleet-wide
breaker (state and counts, no error, no other tenant), opens and closes only its own,
and cannot close the fleet's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from api import workflows
from api.live import LiveServer, auth, make_settings, token
from tether import Client, TaskStatus, Tether, WaitReason, load_settings
from tether.client import ConflictError, NotFoundError
from tether.models.breakers import BreakerState
from tether.services import breakers

PROBLEM = "application/problem+json"
SCRAPE = "scrape-token-for-the-breaker-test"
BREAKERS = {"crm": {"failures": 2, "cool_down": 600}}


@pytest.fixture
def crm_down() -> Iterator[set[str]]:
    workflows.CRM_DOWN.add("down")
    yield workflows.CRM_DOWN
    workflows.CRM_DOWN.add("down")


@pytest.fixture
async def server(store_url: str) -> AsyncIterator[LiveServer]:
    settings = make_settings(
        store_url, metrics_token=SCRAPE, breakers=BREAKERS, step_limits={"crm": 3}
    )
    srv = LiveServer(settings, workers=True)
    await asyncio.to_thread(srv.start)
    yield srv
    await asyncio.to_thread(srv.stop)


@pytest.fixture
async def fleet_operator(store_url: str) -> AsyncIterator[Tether]:
    """Who holds the database: the only one who closes the fleet-wide breaker."""
    app = Tether(settings=load_settings({"database_url": store_url, "breakers": BREAKERS}))
    yield app
    await app.close()


async def _wait(client: Client, task_id: str, status: TaskStatus, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while (task := await client.get(task_id)).status != status:
        assert loop.time() < end, f"task is {task.status}, expected {status}"
        await asyncio.sleep(0.05)


async def test_breakers_over_http_for_each_tenant(
    server: LiveServer, fleet_operator: Tether, crm_down: set[str]
) -> None:
    async with (
        Client(server.url, token=token("t1", roles=("operator",))) as t1,
        Client(server.url, token=token("t2", roles=("operator",))) as t2,
        Client(server.url, token=token("t1", roles=("submitter",))) as submit1,
        Client(server.url, token=token("t2", roles=("submitter",))) as submit2,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        (view,) = await t1.breakers.list()
        assert (view.integration, view.state, view.fleet, view.own) == (
            "crm",
            BreakerState.CLOSED,
            None,
            None,
        )
        assert (view.policy.failures, view.policy.cool_down) == (2, 600)

        # two of t1's calls fail: the fleet-wide breaker opens, for every tenant
        for i in range(2):
            task = await submit1.submit("crm", {"who": f"t1-{i}"})
            await _wait(submit1, task.id, TaskStatus.FAILED)
        body = (await http.get("/v1/breakers/crm", headers=auth("t2", ("viewer",)))).json()
        assert body["state"] == "open" and body["tenant"] is None
        assert body["fleet"]["reason"] == "2 transient failures in a row"
        assert body["fleet"]["updated_by"] is None and body["fleet"]["opens"] == 1
        assert "t1" not in str(body) and "CRM is down" not in str(body)
        held = await submit2.submit("crm", {"who": "t2"})
        await _wait(submit2, held.id, TaskStatus.WAITING)
        assert (await submit2.get(held.id)).wait_reason == WaitReason.CIRCUIT_OPEN

        # a tenant cannot close the fleet's breaker; who holds the database can
        with pytest.raises(ConflictError) as refused:
            await t2.breakers.close("crm")
        assert refused.value.type.endswith("breaker-conflict")
        assert "every tenant" in str(refused.value.detail)
        crm_down.discard("down")
        await breakers.close_breaker(fleet_operator, "crm", by="fleet-ops")
        await _wait(submit2, held.id, TaskStatus.SUCCEEDED)

        # t1 holds its own steps off the CRM: t2's run
        opened = await t1.breakers.open("crm", reason="CRM upgrade")
        assert opened.state == BreakerState.OPEN and opened.own is not None
        assert opened.own.manual and opened.own.reason == "opened by hand: CRM upgrade"
        assert opened.own.updated_by == "t1-user"
        mine = await submit1.submit("crm", {"who": "t1"})
        theirs = await submit2.submit("crm", {"who": "t2"})
        await _wait(submit2, theirs.id, TaskStatus.SUCCEEDED)
        await _wait(submit1, mine.id, TaskStatus.WAITING)
        assert (await t2.breakers.get("crm")).state == BreakerState.CLOSED
        assert (await t2.breakers.get("crm")).own is None, "t1's hold is t1's"

        # metrics: each tenant its own breaker beside the fleet's; the scrape token all
        m1 = (await http.get("/metrics", headers=auth("t1", ("operator",)))).text
        assert 'tether_breaker_state{integration="crm",scope="tenant",state="open"} 1.0' in m1
        assert 'tether_breaker_state{integration="crm",scope="all",state="closed"} 1.0' in m1
        assert 'tether_step_limit_max{integration="crm"} 3.0' in m1
        m2 = (await http.get("/metrics", headers=auth("t2", ("operator",)))).text
        assert 'scope="tenant"' not in m2 and 'scope="all",state="closed"} 1.0' in m2
        fleet = await http.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE}"})
        assert 'tether_breaker_state{integration="crm",scope="t1",state="open"} 1.0' in fleet.text
        assert 'tether_breaker_opens{integration="crm",scope="*"} 1.0' in fleet.text

        closed = await t1.breakers.close("crm")
        assert closed.state == BreakerState.CLOSED
        await _wait(submit1, mine.id, TaskStatus.SUCCEEDED)


async def test_breaker_refusals_roles_and_problems(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        r = await http.get("/v1/breakers/nope", headers=auth())
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
        assert r.json()["type"].endswith("breaker-not-found") and "crm" in r.json()["detail"]
        r = await http.post("/v1/breakers/nope:open", headers=auth())
        assert r.status_code == 404 and r.json()["type"].endswith("breaker-not-found")
        r = await http.get("/v1/breakers/no%20spaces", headers=auth())
        assert r.status_code == 422 and r.json()["type"].endswith("invalid-request")
        for body in ({"reason": ""}, {"reason": 5}, {"why": "x"}):
            r = await http.post("/v1/breakers/crm:open", json=body, headers=auth())
            assert r.status_code == 422, (body, r.text)
        assert (await http.post("/v1/breakers/crm", headers=auth())).status_code == 405
        for role in ("viewer", "operator"):
            assert (await http.get("/v1/breakers", headers=auth(roles=(role,)))).status_code == 200
        denied = await http.post("/v1/breakers/crm:open", headers=auth(roles=("viewer",)))
        assert denied.status_code == 403 and "breakers:operate" in denied.json()["detail"]
        assert (
            await http.get("/v1/breakers", headers=auth(roles=("submitter",)))
        ).status_code == 403
        assert (await http.get("/v1/breakers")).status_code == 401
        ok = await http.post("/v1/breakers/crm:close", headers=auth(roles=("operator",)))
        assert ok.status_code == 200 and ok.json()["state"] == "closed"
    async with Client(server.url, token=token()) as client:
        with pytest.raises(NotFoundError):
            await client.breakers.get("nope")
