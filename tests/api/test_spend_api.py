"""Spend over HTTP (ADR 92): a real server with embedded workers. A submission's
`spend_budget` is kept on the task and covered by its idempotency key; `GET
/v1/tasks/{id}` shows what the task spent; an exhausted budget parks the task (`budget`)
with an approval whose decision, with the new limit as its changes, lets it go on;
`GET /v1/spend` shows the tenant's day, never another tenant's; `tether.Client` reads
both. Bad budgets and days are 422 problems."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from api.live import SECRET, LiveServer, auth, token
from tether import Budget, Client, Cost
from tether.auth import create_token
from tether.models.budgets import utc_day

PROBLEM = "application/problem+json"
OPS = {"Authorization": f"Bearer {create_token(SECRET, 't1', ['approver'], 'ops')}"}
"""A reviewer of tenant t1 (not the submitter, who may not decide its own task)."""


def wait_for(client: httpx.Client, task_id: str, status: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/tasks/{task_id}").json()
        if body["status"] == status:
            return body
        assert time.monotonic() < deadline, f"task is {body['status']}, expected {status}"
        time.sleep(0.05)


def test_spend_budgets_and_figures_over_http(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, headers=auth("t1"), timeout=10) as http:
        r = http.post(
            "/v1/tasks",
            json={"workflow": "metered", "input": {"steps": 3}, "spend_budget": {"usd": 0.1}},
            headers={"Idempotency-Key": "buy-1"},
        )
        assert r.status_code == 202, r.text
        task_id = r.json()["id"]
        assert r.json()["spend_budget"] == {"usd": 0.1, "tokens": None, "on_exhausted": "approve"}
        # The same key with another budget is another submission.
        again = http.post(
            "/v1/tasks",
            json={"workflow": "metered", "input": {"steps": 3}, "spend_budget": {"usd": 0.2}},
            headers={"Idempotency-Key": "buy-1"},
        )
        assert again.status_code == 422 and again.headers["content-type"] == PROBLEM
        assert again.json()["type"].endswith("idempotency-conflict")

        body = wait_for(http, task_id, "waiting")
        assert body["wait_reason"] == "budget"
        assert body["spend"]["usd"] == pytest.approx(0.08)
        assert body["spend"]["tokens"] == 200
        assert body["spend"]["limit_usd"] == pytest.approx(0.1)
        approval_id = body["spend"]["approval_id"]
        approval = http.get(f"/v1/approvals/{approval_id}").json()
        assert approval["risk"] == "budget"
        assert approval["budget"]["scope"] == "task"
        assert approval["budget"]["proposed"]["usd"] == pytest.approx(0.2)

        bad = http.post(
            f"/v1/approvals/{approval_id}/decision",
            json={"approve": True, "reason": "more", "changes": {"usd": -1}},
            headers=OPS,
        )
        assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
        assert bad.json()["errors"][0]["loc"][-1] == "usd"
        ok = http.post(
            f"/v1/approvals/{approval_id}/decision",
            json={"approve": True, "reason": "worth it", "changes": {"usd": 0.5}},
            headers=OPS,
        )
        assert ok.status_code == 200, ok.text
        body = wait_for(http, task_id, "succeeded")
        assert body["spend"]["usd"] == pytest.approx(0.12)
        assert body["spend"]["limit_usd"] == pytest.approx(0.5)
        assert body["spend"]["reserved_usd"] == 0

        day = http.get("/v1/spend").json()
        assert day["tenant"] == "t1" and day["day"] == utc_day(time.time())
        assert day["total"]["usd"] == pytest.approx(0.12)
        assert day["workflows"]["metered"]["tokens"] == 300
        assert http.get("/v1/spend", params={"day": "2001-01-01"}).json()["total"]["usd"] == 0

    with httpx.Client(base_url=server.url, headers=auth("t2"), timeout=10) as other:
        assert other.get("/v1/spend").json()["total"]["usd"] == 0  # t1's spend is t1's
        assert other.get(f"/v1/tasks/{task_id}").status_code == 404


@pytest.mark.parametrize(
    ("budget", "where"),
    [
        ({}, "spend_budget"),
        ({"usd": -1}, "usd"),
        ({"tokens": 1.5}, "tokens"),
        ({"usd": 1, "on_exhausted": "ask"}, "on_exhausted"),
        ({"usd": 1, "limit": 2}, "limit"),
    ],
)
def test_bad_budgets_are_refused(server: LiveServer, budget: dict[str, object], where: str) -> None:
    r = httpx.post(
        f"{server.url}/v1/tasks",
        json={"workflow": "metered", "spend_budget": budget},
        headers=auth("t1"),
    )
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert where in [str(p) for e in r.json()["errors"] for p in e["loc"]]


@pytest.mark.parametrize("day", ["2026-02-31", "yesterday", "2026-1-1"])
def test_bad_days_are_refused(server: LiveServer, day: str) -> None:
    r = httpx.get(f"{server.url}/v1/spend", params={"day": day}, headers=auth("t1"))
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert r.json()["errors"][0]["loc"] == ["query", "day"]


async def test_the_client_submits_budgets_and_reads_spend(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server()
    async with Client(server.url, token=token("t1")) as client:
        task = await client.submit("metered", {"steps": 2}, spend_budget=Budget(usd=1.0))
        assert task.spend_budget == Budget(usd=1.0)
        await client.wait(task.id, timeout=20)
        line = await client.task_spend(task.id)
        assert line.spent == Cost(usd=0.08, tokens=200)
        assert line.limit_usd == 1.0
        day = await client.spend()
        assert day.total.spent == Cost(usd=0.08, tokens=200)
        assert day.workflows["metered"].spent == Cost(usd=0.08, tokens=200)
