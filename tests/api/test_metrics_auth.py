"""`/metrics` needs a credential (ADR 66): the deployment's scrape token (`metrics_token`)
sees every tenant's queue figures, rate-limit buckets and the HTTP request metrics; a
tenant's credential with `metrics:read` (operator, admin) sees its own tenant's queue
figures and buckets only."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from api.live import LiveServer, auth, build_app
from tether.auth import create_api_key

SCRAPE = "scrape-token-0123456789abcdef-0123456789"


def _tasks(text: str, queue: str, status: str = "queued") -> float | None:
    match = re.search(rf'^tether_tasks{{queue="{queue}",status="{status}"}} (\S+)$', text, re.M)
    return None if match is None else float(match.group(1))


def _submit(http: httpx.Client, tenant: str, n: int, queue: str) -> None:
    for i in range(n):
        body = {"workflow": "echo", "input": {"x": i}, "queue": queue}
        assert http.post("/v1/tasks", json=body, headers=auth(tenant)).status_code == 202


def test_metrics_need_a_credential_and_a_tenant_sees_only_its_own(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=False, metrics_token=SCRAPE)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        _submit(http, "t1", 2, "default")
        _submit(http, "t2", 3, "default")
        _submit(http, "t2", 1, "t2-private-queue")

        assert http.get("/metrics").status_code == 401
        wrong = http.get("/metrics", headers={"Authorization": "Bearer " + SCRAPE[:-1] + "x"})
        assert wrong.status_code == 401 and SCRAPE not in wrong.text
        for role in ("viewer", "submitter", "approver"):
            denied = http.get("/metrics", headers=auth("t1", (role,)))
            assert denied.status_code == 403 and "metrics:read" in denied.json()["detail"]

        for role in ("operator", "admin"):
            mine = http.get("/metrics", headers=auth("t1", (role,)))
            assert mine.status_code == 200, mine.text
            assert mine.headers["content-type"].startswith("text/plain")
            assert _tasks(mine.text, "default") == 2.0
            assert "t2-private-queue" not in mine.text
            assert "tether_http_requests" not in mine.text  # the whole process's traffic
            assert 'kind="submits",tenant="t1"' in mine.text  # its submission bucket
            assert 'tenant="t2"' not in mine.text
        theirs = http.get("/metrics", headers=auth("t2", ("operator",))).text
        assert _tasks(theirs, "default") == 3.0 and _tasks(theirs, "t2-private-queue") == 1.0

        everyone = http.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE}"})
        assert everyone.status_code == 200
        assert _tasks(everyone.text, "default") == 5.0
        assert _tasks(everyone.text, "t2-private-queue") == 1.0
        assert 'tether_queue_oldest_seconds{queue="t2-private-queue"}' in everyone.text
        for tenant in ("t1", "t2"):  # every tenant's rate-limit buckets (ADR 90)
            assert (
                f'tether_rate_limit_available{{integration="",kind="submits",tenant="{tenant}"}}'
                in (everyone.text)
            )
        assert 'tether_http_requests_total{method="POST",route="/v1/tasks",status="202"} 6.0' in (
            everyone.text
        )


async def test_an_operator_api_key_reads_its_tenants_metrics(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=False)  # no scrape token: tenant views only
    side = build_app(server.settings.database_url, server.settings)
    async with side:
        _, key = await create_api_key(side.store, "t1", ["operator"], "prometheus")
    async with httpx.AsyncClient(base_url=server.url) as http:
        body = {"workflow": "echo", "input": {"x": 1}}
        assert (await http.post("/v1/tasks", json=body, headers=auth("t1"))).status_code == 202
        r = await http.get("/metrics", headers={"X-API-Key": key})
        assert r.status_code == 200 and _tasks(r.text, "default") == 1.0
        # Without a configured scrape token, no bearer is the deployment's.
        guess = {"Authorization": "Bearer None"}
        assert (await http.get("/metrics", headers=guess)).status_code == 401
