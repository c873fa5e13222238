"""The full life of tasks through `tether.Client` against a real server."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from api.live import LiveServer, auth, token
from tether import Client, TaskStatus
from tether.client import ApiError, NotFoundError


async def wait_status(client: Client, task_id: str, status: str, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if (await client.get(task_id)).status == status:
                return
            await asyncio.sleep(0.05)


async def test_full_life_of_a_task(server: LiveServer) -> None:
    async with Client(server.url, token=token()) as client:
        task = await client.submit("echo", {"x": 21}, correlation_id="order-7")
        assert task.status in (TaskStatus.QUEUED, TaskStatus.RUNNING)  # eager: may run at once
        assert task.correlation_id == "order-7"
        done = await client.wait(task.id, timeout=30)
        assert done.status == TaskStatus.SUCCEEDED
        assert done.result == {"x": 21, "doubled": 42}
        assert done.steps_done == 1 and done.current_step == "double"
        steps = await client.steps(task.id)
        assert [(s.name, s.result) for s in steps] == [("double", 42)]
        types = [e.type async for e in client.events(task.id, follow=False)]
        assert types[0] == "task.created" and types[-1] == "task.succeeded"
        assert "step.succeeded" in types
        found, cursor = await client.list_tasks(correlation_id="order-7")
        assert [t.id for t in found] == [task.id] and cursor is None


async def test_wait_by_polling(server: LiveServer) -> None:
    async with Client(server.url, token=token()) as client:
        task = await client.submit("echo", {"x": 1})
        done = await client.wait(task.id, timeout=30, follow_events=False)
        assert done.result == {"x": 1, "doubled": 2}


async def test_signal_cancel_and_follow_events(server: LiveServer) -> None:
    async with Client(server.url, token=token()) as client:
        gated = await client.submit("gate", {"label": "a"})
        await wait_status(client, gated.id, "waiting")
        follower = asyncio.create_task(client.wait(gated.id, timeout=30))
        seen = asyncio.create_task(_collect(client, gated.id))
        await client.signal(gated.id, "go", {"ok": True})
        done = await follower
        assert done.status == TaskStatus.SUCCEEDED
        assert done.result == {"before": "tag:a", "after": "tag:a", "payload": {"ok": True}}
        types = await asyncio.wait_for(seen, 30)  # the stream ended with the task
        assert types[-1] == "task.succeeded" and "signal.received" in types

        other = await client.submit("gate", {"label": "b"})
        await wait_status(client, other.id, "waiting")
        cancelled = await client.cancel(other.id)
        assert cancelled.status == TaskStatus.CANCELLED
        with pytest.raises(ApiError) as err:
            await client.cancel(other.id)
        assert err.value.status == 409
        with pytest.raises(ApiError) as err:
            await client.signal(other.id, "go")
        assert err.value.status == 409
        with pytest.raises(NotFoundError):
            await client.get("no-such-task")


async def _collect(client: Client, task_id: str) -> list[str]:
    return [e.type async for e in client.events(task_id)]


async def test_idempotency_over_http(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=auth()) as http:
        body = {"workflow": "echo", "input": {"x": 5}, "priority": 3}
        first = await http.post("/v1/tasks", json=body, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == 202
        assert "Idempotent-Replayed" not in first.headers
        assert first.headers["Location"] == f"/v1/tasks/{first.json()['id']}"
        again = await http.post("/v1/tasks", json=body, headers={"Idempotency-Key": "k-1"})
        assert again.status_code == 202
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        # Same input, another field changed: a different body.
        other = await http.post(
            "/v1/tasks", json={**body, "priority": 4}, headers={"Idempotency-Key": "k-1"}
        )
        assert other.status_code == 422
        assert other.headers["content-type"] == "application/problem+json"
        assert other.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
        # Keys are per tenant: another tenant's same key makes its own task.
        theirs = await http.post(
            "/v1/tasks", json=body, headers={"Idempotency-Key": "k-1", **auth("t2")}
        )
        assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]


async def test_batch_all_or_nothing(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=auth()) as http:
        bad = {
            "tasks": [
                {"workflow": "echo", "input": {"x": 1}},
                {"workflow": "echo", "input": {"x": "not a number"}},
                {"workflow": "nope"},
            ]
        }
        r = await http.post("/v1/tasks:batch", json=bad)
        assert r.status_code == 422
        locs = [e["loc"] for e in r.json()["errors"]]
        assert ["body", "tasks", 1, "input", "x"] in locs
        assert ["body", "tasks", 2, "workflow"] in locs
        listed = (await http.get("/v1/tasks")).json()
        assert listed["items"] == []  # nothing stored

        too_many = {"tasks": [{"workflow": "echo", "input": {"x": 1}}] * 1001}
        assert (await http.post("/v1/tasks:batch", json=too_many)).status_code == 422

        good = {"tasks": [{"workflow": "echo", "input": {"x": i}} for i in range(50)]}
        r = await http.post("/v1/tasks:batch", json=good, headers={"Idempotency-Key": "b1"})
        assert r.status_code == 202
        ids = [t["id"] for t in r.json()["items"]]
        assert len(set(ids)) == 50
        again = await http.post("/v1/tasks:batch", json=good, headers={"Idempotency-Key": "b1"})
        assert [t["id"] for t in again.json()["items"]] == ids
        assert again.headers["Idempotent-Replayed"] == "true"


async def test_list_filters_and_cursor(server: LiveServer) -> None:
    async with Client(server.url, token=token()) as client:
        ids = [(await client.submit("gate", {"label": str(i)})).id for i in range(7)]
        seen: list[str] = []
        cursor = None
        while True:
            page, cursor = await client.list_tasks(workflow="gate", limit=3, cursor=cursor)
            seen += [t.id for t in page]
            if cursor is None:
                break
        assert seen == sorted(ids, reverse=True)
        for task_id in ids:
            await wait_status(client, task_id, "waiting")
        await client.cancel(ids[0])
        cancelled, _ = await client.list_tasks(status=["cancelled"])
        assert [t.id for t in cancelled] == [ids[0]]
        waiting, _ = await client.list_tasks(status=["waiting", "queued"], limit=100)
        assert sorted(t.id for t in waiting) == sorted(ids[1:])
    async with httpx.AsyncClient(base_url=server.url, headers=auth()) as http:
        r = await http.get("/v1/tasks", params={"created_after": 4e9})
        assert r.json()["items"] == []
        r = await http.get("/v1/tasks", params={"created_before": 4e9, "limit": 500})
        assert len(r.json()["items"]) == 7
