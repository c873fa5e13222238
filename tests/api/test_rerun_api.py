"""`POST /v1/tasks/{id}/rerun` and `Client.rerun` on a real server, on both backends:
the new linked task, `from_step`, 409 before the end, roles and tenancy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from api.live import LiveServer, auth, make_settings, token
from tether import Client, TaskStatus
from tether.client import ConflictError, NotFoundError

PROBLEM = "application/problem+json"


@pytest.fixture
async def server(store_url: str) -> AsyncIterator[LiveServer]:
    srv = LiveServer(make_settings(store_url), workers=True)
    await asyncio.to_thread(srv.start)
    yield srv
    await asyncio.to_thread(srv.stop)


async def _ended(client: Client, task_id: str) -> str:
    return str((await client.wait(task_id, timeout=30)).status)


async def _waiting(client: Client, task_id: str) -> None:
    async with asyncio.timeout(20):
        while True:
            if (await client.get(task_id)).status == TaskStatus.WAITING:
                return
            await asyncio.sleep(0.02)


async def test_rerun_over_http(server: LiveServer) -> None:
    async with (
        Client(server.url, token=token(roles=("submitter",))) as sam,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        done = await sam.submit("echo", {"x": 4})
        assert await _ended(sam, done.id) == "succeeded"
        ops = auth(roles=("operator",))

        # every finished step is reused: the new task ends without running one again
        r = await http.post(f"/v1/tasks/{done.id}/rerun", headers=ops)
        assert r.status_code == 202, r.text
        again = r.json()
        assert r.headers["location"] == f"/v1/tasks/{again['id']}"
        assert (again["forked_from"], again["fork_root"], again["fork_from_seq"]) == (
            done.id,
            done.id,
            None,
        )
        assert again["progress"]["steps_done"] == 1 and again["created_by"] == "t1-user"
        assert await _ended(sam, again["id"]) == "succeeded"
        assert (await sam.get(again["id"])).result == {"x": 4, "doubled": 8}

        # from a step: that step runs again; a re-run of a re-run keeps the chain's root
        r = await http.post(f"/v1/tasks/{again['id']}/rerun", json={"from_step": 1}, headers=ops)
        assert r.status_code == 202, r.text
        assert r.json()["progress"]["steps_done"] == 0
        assert (r.json()["fork_from_seq"], r.json()["fork_root"]) == (1, done.id)
        assert await _ended(sam, r.json()["id"]) == "succeeded"

        # not ended yet: 409; the waiting task stays as it was
        gated = await sam.submit("gate", {"label": "g"})
        await _waiting(sam, gated.id)
        r = await http.post(f"/v1/tasks/{gated.id}/rerun", headers=ops)
        assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
        assert "only ended tasks" in r.json()["detail"]
        assert (await sam.get(gated.id)).status == TaskStatus.WAITING

        # roles, tenancy and bad bodies
        assert (await http.post(f"/v1/tasks/{done.id}/rerun")).status_code == 401
        r = await http.post(f"/v1/tasks/{done.id}/rerun", headers=auth(roles=("submitter",)))
        assert r.status_code == 403 and "tasks:rerun" in r.json()["detail"]
        r = await http.post(f"/v1/tasks/{done.id}/rerun", headers=auth("t2", ("admin",)))
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
        for body in ({"from_step": 0}, {"from_step": "two"}, {"from": 1}):
            r = await http.post(f"/v1/tasks/{done.id}/rerun", json=body, headers=ops)
            assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, body
        r = await http.post(
            f"/v1/tasks/{done.id}/rerun",
            content=b"{",
            headers={**ops, "Content-Type": "application/json"},
        )
        assert r.status_code == 400


async def test_client_rerun(server: LiveServer) -> None:
    async with (
        Client(server.url, token=token(roles=("admin",))) as admin,
        Client(server.url, token=token("t2", ("admin",))) as other,
    ):
        gated = await admin.submit("gate", {"label": "c"})
        await _waiting(admin, gated.id)
        with pytest.raises(ConflictError) as err:
            await admin.rerun(gated.id)
        assert err.value.status == 409
        await admin.cancel(gated.id)
        again = await admin.rerun(gated.id, from_step=1)
        assert (again.forked_from, again.fork_from_seq, again.fork_root) == (gated.id, 1, gated.id)
        await _waiting(admin, again.id)  # the re-run waits for its own signal
        await admin.signal(again.id, "go", {"n": 1})
        assert (await admin.wait(again.id, timeout=30)).result == {
            "before": "tag:c",
            "after": "tag:c",
            "payload": {"n": 1},
        }
        with pytest.raises(NotFoundError):
            await other.rerun(gated.id)
