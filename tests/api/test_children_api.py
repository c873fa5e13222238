"""Child tasks over HTTP, on both backends: `parent_id` on the task, the children of a
task (`GET /v1/tasks/{id}/children`, `?parent_id=`), tenancy, and the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from api.live import LiveServer, auth, make_settings, token
from tether import Client
from tether.client import NotFoundError


@pytest.fixture
async def server(store_url: str) -> AsyncIterator[LiveServer]:
    srv = LiveServer(make_settings(store_url), workers=True)
    await asyncio.to_thread(srv.start)
    yield srv
    await asyncio.to_thread(srv.stop)


async def test_children_are_linked_to_their_parent(server: LiveServer) -> None:
    async with (
        Client(server.url, token=token(roles=("submitter",))) as sam,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        parent = await sam.submit("fanout", {"n": 3})
        done = await sam.wait(parent.id, timeout=30)
        assert str(done.status) == "succeeded", done.error
        assert done.result == [{"x": i, "doubled": 2 * i} for i in range(3)]
        assert done.parent_id is None

        r = await http.get(f"/v1/tasks/{parent.id}/children", headers=auth())
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert len(items) == 3 and {c["parent_id"] for c in items} == {parent.id}
        assert sorted(c["input"]["x"] for c in items) == [0, 1, 2]
        assert all(c["tenant"] == "t1" and c["status"] == "succeeded" for c in items)

        # one page at a time, newest first, like every task listing
        r = await http.get(f"/v1/tasks/{parent.id}/children?limit=2", headers=auth())
        page, cursor = r.json()["items"], r.json()["next_cursor"]
        r = await http.get(
            f"/v1/tasks/{parent.id}/children", params={"cursor": cursor}, headers=auth()
        )
        assert [c["id"] for c in page + r.json()["items"]] == [c["id"] for c in items]

        # the same as a filter of the task list; a child's own view names its parent
        r = await http.get("/v1/tasks", params={"parent_id": parent.id}, headers=auth())
        assert [c["id"] for c in r.json()["items"]] == [c["id"] for c in items]
        r = await http.get(f"/v1/tasks/{items[0]['id']}", headers=auth())
        assert r.json()["parent_id"] == parent.id

        # the client
        kids, next_cursor = await sam.children(parent.id)
        assert [k.id for k in kids] == [c["id"] for c in items] and next_cursor is None
        assert all(k.parent_id == parent.id for k in kids)
        listed, _ = await sam.list_tasks(parent_id=parent.id)
        assert [t.id for t in listed] == [k.id for k in kids]

        # another tenant sees neither the parent's children nor the children by filter
        other = auth(tenant="t2")
        r = await http.get(f"/v1/tasks/{parent.id}/children", headers=other)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        r = await http.get("/v1/tasks", params={"parent_id": parent.id}, headers=other)
        assert r.status_code == 200 and r.json()["items"] == []
        async with Client(server.url, token=token(tenant="t2")) as eve:
            with pytest.raises(NotFoundError):
                await eve.children(parent.id)
        assert (await http.get(f"/v1/tasks/{parent.id}/children")).status_code == 401
