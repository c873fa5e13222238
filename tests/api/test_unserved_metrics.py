"""`/metrics` shows the queued tasks no live worker claims (ADR 64): on an API-only
node with no worker anywhere, a submitted task waits, and the gauge says for which
(queue, workflow, version). An operators' figure: shown with the scrape token only."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from api.live import LiveServer, auth

SCRAPE = "s" * 40


def test_metrics_count_the_tasks_no_live_worker_claims(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=False, metrics_token=SCRAPE)
    with httpx.Client(base_url=server.url, headers=auth(), timeout=30) as client:
        for _ in range(2):
            r = client.post("/v1/tasks", json={"workflow": "gate", "input": {}})
            assert r.status_code == 202, r.text
        tenant_view = client.get("/metrics").text
        text = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE}"}).text
    assert "tether_tasks_unserved" not in tenant_view
    assert 'tether_tasks_unserved{queue="default",version="1",workflow="gate"} 2.0' in text
    assert 'tether_tasks{queue="default",status="queued"} 2.0' in text
