"""Sagas over HTTP, on both backends (ADR 83): `POST /v1/tasks/{id}/cancel` with
`{"compensate": true}`, `POST /v1/tasks/{id}/compensate`, the `Client` methods, the
task's `phase` and `error.compensated`, roles and tenancy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from api import workflows
from api.live import LiveServer, auth, make_settings, token
from tether import Client, TaskPhase, TaskStatus
from tether.client import ConflictError, NotFoundError

PROBLEM = "application/problem+json"


@pytest.fixture
async def server(store_url: str) -> AsyncIterator[LiveServer]:
    workflows.UNDONE.clear()
    srv = LiveServer(make_settings(store_url), workers=True)
    await asyncio.to_thread(srv.start)
    yield srv
    await asyncio.to_thread(srv.stop)


async def _waiting(client: Client, task_id: str) -> None:
    async with asyncio.timeout(20):
        while True:
            if (await client.get(task_id)).status == TaskStatus.WAITING:
                return
            await asyncio.sleep(0.02)


async def test_cancel_with_compensation_over_http(server: LiveServer) -> None:
    async with (
        Client(server.url, token=token(roles=("submitter",))) as sam,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        held = await sam.submit("saga", {"label": "seat-12A"})
        await _waiting(sam, held.id)
        r = await http.post(
            f"/v1/tasks/{held.id}/cancel",
            json={"compensate": True},
            headers=auth(roles=("submitter",)),
        )
        assert r.status_code == 202, r.text
        assert (r.json()["status"], r.json()["phase"]) == ("queued", "compensation")
        task = await sam.wait(held.id, timeout=30)
        assert task.status == TaskStatus.CANCELLED and task.phase == TaskPhase.COMPENSATION
        assert task.error is not None and task.error.compensated == ["hold"]
        assert workflows.UNDONE == ["tag:seat-12A"]

        # the Client's form, and a plain cancel that undoes nothing
        other = await sam.submit("saga", {"label": "b"})
        plain = await sam.submit("saga", {"label": "c"})
        for t in (other, plain):
            await _waiting(sam, t.id)
        await sam.cancel(other.id, compensate=True)
        await sam.cancel(plain.id)
        assert (await sam.wait(other.id, timeout=30)).status == TaskStatus.CANCELLED
        assert workflows.UNDONE == ["tag:seat-12A", "tag:b"]
        assert (await sam.get(plain.id)).phase == TaskPhase.EXECUTION

        r = await http.post(
            f"/v1/tasks/{plain.id}/cancel", json={"compensate": "yes"}, headers=auth()
        )
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM


async def test_compensate_an_ended_task_over_http(server: LiveServer) -> None:
    async with (
        Client(server.url, token=token(roles=("submitter",))) as sam,
        Client(server.url, token=token(roles=("operator",))) as ops,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        failing = await sam.submit("saga", {"label": "crm"})
        await _waiting(sam, failing.id)
        await sam.signal(failing.id, "go", "fail")
        failed = await sam.wait(failing.id, timeout=30)
        assert failed.status == TaskStatus.FAILED and failed.error is not None
        assert failed.error.compensated == ["hold"], "a failure compensates by itself"
        assert workflows.UNDONE == ["tag:crm"]

        # an operator's compensate of it: a linked task, nothing undone twice
        r = await http.post(f"/v1/tasks/{failed.id}/compensate", headers=auth(roles=("operator",)))
        assert r.status_code == 202, r.text
        fork = r.json()
        assert r.headers["location"] == f"/v1/tasks/{fork['id']}"
        assert (fork["forked_from"], fork["phase"]) == (failed.id, "compensation")
        ended = await sam.wait(fork["id"], timeout=30)
        assert ended.status == TaskStatus.SUCCEEDED and workflows.UNDONE == ["tag:crm"]
        assert ended.result == {"compensated": ["hold"], "of": failed.id}

        # a task cancelled without compensation is undone by the Client's compensate
        cancelled = await sam.submit("saga", {"label": "late"})
        await _waiting(sam, cancelled.id)
        await sam.cancel(cancelled.id)
        again = await ops.compensate(cancelled.id)
        assert again.phase == TaskPhase.COMPENSATION
        assert (await sam.wait(again.id, timeout=30)).status == TaskStatus.SUCCEEDED
        assert workflows.UNDONE == ["tag:crm", "tag:late"]

        # 409 for a task that has not ended or succeeded; roles; another tenant's: 404
        running = await sam.submit("saga", {"label": "open"})
        await _waiting(sam, running.id)
        with pytest.raises(ConflictError):
            await ops.compensate(running.id)
        await sam.signal(running.id, "go", "ok")
        assert (await sam.wait(running.id, timeout=30)).status == TaskStatus.SUCCEEDED
        r = await http.post(f"/v1/tasks/{running.id}/compensate", headers=auth())
        assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
        assert "only failed or cancelled" in r.json()["detail"]
        r = await http.post(f"/v1/tasks/{failed.id}/compensate", headers=auth(roles=("submitter",)))
        assert r.status_code == 403 and "tasks:compensate" in r.json()["detail"]
        assert (await http.post(f"/v1/tasks/{failed.id}/compensate")).status_code == 401
        async with Client(server.url, token=token("t2", roles=("operator",))) as stranger:
            with pytest.raises(NotFoundError):
                await stranger.compensate(failed.id)
            with pytest.raises(NotFoundError):
                await stranger.cancel(cancelled.id, compensate=True)
