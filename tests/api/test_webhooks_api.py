"""The webhook endpoints on a live server: the SSRF guard at registration (problem+json
422, nothing stored, nothing sent), subscriptions' life cycle with the secret shown
once, the role matrix, tenancy, and `tether.Client` end to end with a real receiver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from standardwebhooks import Webhook

from api.live import LiveServer, auth, token
from receiver import Receiver
from tether import Client
from tether.api import problem_types
from tether.client import ApiError, NotFoundError
from tether.models.times import parse_time

REFUSED = [
    ("http://169.254.169.254/latest/meta-data", "http is allowed only to allowlisted hosts"),
    ("https://169.254.169.254/latest/meta-data", "cloud metadata"),
    ("http://10.0.0.1/", "http is allowed only to allowlisted hosts"),
    ("https://10.0.0.1/", "private address"),
    ("https://localhost/hook", "'localhost' resolves to 127.0.0.1"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_registration_refuses_internal_addresses_with_a_problem(
    shared_server: LiveServer, url: str, reason: str
) -> None:
    with httpx.Client(base_url=shared_server.url, headers=auth("ssrf")) as http:
        r = http.post("/v1/webhooks", json={"url": url, "event_types": ["task.failed"]})
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["type"] == problem_types.URL_REFUSED.uri
        assert reason in problem["detail"]
        assert problem["errors"] == [
            {"loc": ["body", "url"], "msg": problem["errors"][0]["msg"], "type": "url_refused"}
        ]
        assert http.get("/v1/webhooks").json()["items"] == []


def test_a_refused_callback_url_stores_no_task(shared_server: LiveServer) -> None:
    with httpx.Client(base_url=shared_server.url, headers=auth("ssrf-cb")) as http:
        r = http.post(
            "/v1/tasks",
            json={"workflow": "echo", "input": 1, "callback_url": "http://169.254.169.254/"},
        )
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["body", "callback_url"]
        assert http.get("/v1/tasks").json()["items"] == []


def test_subscriptions_life_cycle_shows_the_secret_once(shared_server: LiveServer) -> None:
    with httpx.Client(base_url=shared_server.url, headers=auth("life")) as http:
        body = {"url": "https://93.184.216.34/in", "event_types": ["task.failed", "*"]}
        created = http.post("/v1/webhooks", json=body)
        assert created.status_code == 201
        sub = created.json()
        assert sub["secret"].startswith("whsec_") and sub["status"] == "active"
        sid = sub["id"]
        shown = http.get(f"/v1/webhooks/{sid}").json()
        assert "secret" not in shown and shown["event_types"] == ["task.failed", "*"]
        assert [s["id"] for s in http.get("/v1/webhooks").json()["items"]] == [sid]
        off = http.patch(f"/v1/webhooks/{sid}", json={"enabled": False}).json()
        assert off["status"] == "disabled" and off["disabled_reason"] == "disabled by an operator"
        on = http.patch(f"/v1/webhooks/{sid}", json={"enabled": True, "workflows": ["echo"]})
        assert on.json()["status"] == "active" and on.json()["workflows"] == ["echo"]
        rotated = http.post(f"/v1/webhooks/{sid}/rotate-secret", json={"overlap_seconds": 60})
        assert rotated.json()["secret"] not in (sub["secret"], None)
        assert parse_time(rotated.json()["previous_secret_until"]) > time.time()
        bad = http.patch(f"/v1/webhooks/{sid}", json={"event_types": ["task.exploded"]})
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == [
            "body",
            "event_types",
        ]
        assert http.post(f"/v1/webhooks/{sid}/replay", json={}).status_code == 422
        assert http.delete(f"/v1/webhooks/{sid}").status_code == 204
        gone = http.get(f"/v1/webhooks/{sid}")
        assert gone.status_code == 404
        assert gone.json()["type"] == problem_types.WEBHOOK_NOT_FOUND.uri
        bad_cursor = http.get("/v1/webhooks", params={"cursor": sid})
        assert bad_cursor.json()["type"] == problem_types.INVALID_CURSOR.uri


@pytest.mark.parametrize(
    ("role", "read", "replay", "manage"),
    [
        ("viewer", 403, 403, 403),
        ("submitter", 403, 403, 403),
        ("approver", 403, 403, 403),
        ("operator", 200, 200, 403),
        ("admin", 200, 200, 201),
    ],
)
def test_the_role_matrix(
    shared_server: LiveServer, role: str, read: int, replay: int, manage: int
) -> None:
    tenant = f"roles-{role}"
    with httpx.Client(base_url=shared_server.url) as http:
        admin = auth(tenant)
        sid = http.post(
            "/v1/webhooks",
            json={"url": "https://93.184.216.34/", "event_types": ["*"]},
            headers=admin,
        ).json()["id"]
        mine = auth(tenant, (role,))
        assert http.get("/v1/webhooks", headers=mine).status_code == read
        assert http.get("/v1/webhook-deliveries", headers=mine).status_code == read
        r = http.post(f"/v1/webhooks/{sid}/replay", json={"since": 0}, headers=mine)
        assert r.status_code == replay
        body = {"url": "https://93.184.216.34/", "event_types": ["*"]}
        assert http.post("/v1/webhooks", json=body, headers=mine).status_code == manage


def test_another_tenants_subscription_is_not_found(shared_server: LiveServer) -> None:
    with httpx.Client(base_url=shared_server.url) as http:
        sid = http.post(
            "/v1/webhooks",
            json={"url": "https://93.184.216.34/", "event_types": ["*"]},
            headers=auth("owner"),
        ).json()["id"]
        other = auth("intruder")
        assert http.get(f"/v1/webhooks/{sid}", headers=other).status_code == 404
        assert http.patch(f"/v1/webhooks/{sid}", json={}, headers=other).status_code == 404
        assert http.delete(f"/v1/webhooks/{sid}", headers=other).status_code == 404
        r = http.post(f"/v1/webhooks/{sid}/replay", json={"since": 0}, headers=other)
        assert r.status_code == 404
        assert http.get(f"/v1/webhook-deliveries/x{sid}", headers=other).status_code == 404


async def test_the_client_subscribes_verifies_retries_and_replays(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(egress_allow=["127.0.0.1"], webhook_poll_interval=0.1)
    async with Receiver() as receiver, Client(server.url, token=token("cl")) as client:
        sub = await client.webhooks.create(
            f"{receiver.url}/all", ["task.succeeded"], description="e2e"
        )
        task, callback = await client.webhooks.submit_with_callback(
            "echo", 21, callback_url=f"{receiver.url}/cb"
        )
        assert callback.task_id == task.id and callback.secret.startswith("whsec_")
        await client.wait(task.id, timeout=20)
        await receiver.wait_for(lambda rs: {r.path for r in rs} >= {"/all", "/cb"})
        by_path = {r.path: r for r in receiver.requests}
        assert Webhook(sub.secret).verify(by_path["/all"].body, by_path["/all"].headers)
        body = Webhook(callback.secret).verify(by_path["/cb"].body, by_path["/cb"].headers)
        assert body["data"]["task"]["id"] == task.id
        with pytest.raises(Exception, match="signature"):
            Webhook(sub.secret).verify(by_path["/cb"].body, by_path["/cb"].headers)

        for _ in range(200):
            page, _ = await client.webhooks.deliveries(subscription_id=sub.id)
            if page and page[0].status == "delivered":
                break
            await asyncio.sleep(0.02)
        (delivered,) = page
        assert delivered.webhook_id == by_path["/all"].headers["webhook-id"]
        full = await client.webhooks.delivery(delivered.id)
        assert '"task.succeeded"' in full.body
        count = len(receiver.requests)
        again = await client.webhooks.retry(delivered.id)
        assert again.status == "pending"
        await receiver.wait_for(lambda rs: len(rs) > count)
        assert receiver.requests[-1].headers["webhook-id"] == delivered.webhook_id
        replayed = await client.webhooks.replay(sub.id, since=0)
        assert replayed.more is False
        subs, _ = await client.webhooks.list_subscriptions()
        assert {s.id for s in subs} == {sub.id, callback.id}
        off = await client.webhooks.update(sub.id, enabled=False)
        assert off.status == "disabled"
        with pytest.raises(ApiError) as refused:
            await client.webhooks.create("http://10.0.0.1/", ["*"])
        assert refused.value.status == 422
        await client.webhooks.delete(sub.id)
        with pytest.raises(NotFoundError):
            await client.webhooks.get(sub.id)


async def test_an_api_only_server_still_delivers(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=False, egress_allow=["127.0.0.1"], webhook_poll_interval=0.1)
    async with Receiver() as receiver, Client(server.url, token=token("api-only")) as client:
        sub = await client.webhooks.create(f"{receiver.url}/in", ["task.created"])
        task = await client.submit("echo", 1)  # no worker: it stays queued
        await receiver.wait_for(lambda rs: len(rs) >= 1)
    body = Webhook(sub.secret).verify(receiver.requests[0].body, receiver.requests[0].headers)
    assert body["data"]["task"]["id"] == task.id and body["data"]["task"]["status"] == "queued"
