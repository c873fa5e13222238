"""SSE resume after a dropped connection; a response lost after the server committed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx

from api.live import LiveServer, auth, token
from tether import Client


async def _read_frames(
    source: httpx.Response | AsyncIterator[str], until: str | None
) -> list[dict[str, object]]:
    """Parse SSE frames until an event of type `until` (or the end of the stream)."""
    lines = source.aiter_lines() if isinstance(source, httpx.Response) else source
    frames: list[dict[str, object]] = []
    current: dict[str, str] = {}
    async for line in lines:
        if line == "":
            if "data" in current:
                frame = {"id": int(current["id"]), "event": current["event"]}
                frame["data"] = json.loads(current["data"])
                frames.append(frame)
                if frame["event"] == until:
                    return frames
            current = {}
            continue
        name, _, value = line.partition(":")
        current[name] = value.lstrip(" ")
    return frames


async def test_sse_resumes_with_last_event_id(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=auth(), timeout=30) as http:
        task_id = (await http.post("/v1/tasks", json={"workflow": "gate", "input": {}})).json()[
            "id"
        ]
        sse = {"Accept": "text/event-stream"}
        # First connection: read until the task waits for its signal, then drop it.
        async with http.stream("GET", f"/v1/tasks/{task_id}/events", headers=sse) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            first = await asyncio.wait_for(_read_frames(r, until="task.waiting"), 30)
        assert first[0]["event"] == "task.created"
        last_id = first[-1]["id"]

        # While nobody listens, the task moves on and ends.
        r = await http.post(f"/v1/tasks/{task_id}/signals/go", json={"n": 1})
        assert r.status_code == 202
        async with asyncio.timeout(30):
            while True:
                if (await http.get(f"/v1/tasks/{task_id}")).json()["status"] == "succeeded":
                    break
                await asyncio.sleep(0.05)

        # Resume: exactly the missed events, then the stream closes (the task ended).
        headers = {**sse, "Last-Event-ID": str(last_id)}
        async with http.stream("GET", f"/v1/tasks/{task_id}/events", headers=headers) as r:
            rest = await asyncio.wait_for(_read_frames(r, until=None), 30)
        ids = [f["id"] for f in first + rest]
        assert ids == sorted(set(ids)), "no event twice, none out of order"
        assert rest and all(f["id"] > last_id for f in rest)
        assert rest[-1]["event"] == "task.succeeded"
        everything = (await http.get(f"/v1/tasks/{task_id}/events")).json()["items"]
        assert [e["id"] for e in everything] == ids
        assert [e["type"] for e in everything] == [f["event"] for f in first + rest]


async def test_sse_stream_is_live(server: LiveServer) -> None:
    """Events arrive on an open stream as they happen, and the stream ends with the task."""
    async with httpx.AsyncClient(base_url=server.url, headers=auth(), timeout=30) as http:
        task_id = (await http.post("/v1/tasks", json={"workflow": "gate", "input": {}})).json()[
            "id"
        ]
        sse = {"Accept": "text/event-stream"}
        async with http.stream("GET", f"/v1/tasks/{task_id}/events", headers=sse) as r:
            lines = r.aiter_lines()
            waiting = await asyncio.wait_for(_read_frames(lines, until="task.waiting"), 30)
            assert waiting[-1]["event"] == "task.waiting"
            await http.post(f"/v1/tasks/{task_id}/signals/go")
            rest = await asyncio.wait_for(_read_frames(lines, until=None), 30)
        assert rest[-1]["event"] == "task.succeeded"


class DroppingProxy:
    """A TCP proxy on 127.0.0.1. While `drops` > 0, it forwards a request, waits until
    the server starts answering (so the server has committed), then cuts the client's
    connection without passing the response on."""

    def __init__(self, upstream_port: int, drops: int) -> None:
        self.upstream_port = upstream_port
        self.drops = drops
        self.dropped = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        drop = self.drops > 0
        if drop:
            self.drops -= 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, cut: bool) -> None:
            try:
                while data := await src.read(65536):
                    if cut:
                        self.dropped += 1
                        break  # the response exists: the server committed; lose it
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                for w in (writer, up_writer):
                    with contextlib.suppress(Exception):
                        w.close()

        to_server = asyncio.create_task(pipe(reader, up_writer, False))
        to_client = asyncio.create_task(pipe(up_reader, writer, drop))
        self._tasks |= {to_server, to_client}
        await asyncio.gather(to_server, to_client, return_exceptions=True)


async def test_lost_response_retry_yields_one_task(server: LiveServer) -> None:
    proxy = DroppingProxy(server.port, drops=1)
    port = await proxy.start()
    try:
        async with Client(f"http://127.0.0.1:{port}", token=token(), backoff=0.05) as client:
            task = await client.submit("echo", {"x": 3}, correlation_id="lost-response")
        assert proxy.dropped == 1, "the first response was lost"
        assert proxy.connections >= 2, "the client retried on a new connection"
    finally:
        await proxy.stop()
    async with Client(server.url, token=token()) as direct:
        found, _ = await direct.list_tasks(correlation_id="lost-response")
        assert [t.id for t in found] == [task.id], "exactly one task"
        assert (await direct.wait(task.id, timeout=30)).result == {"x": 3, "doubled": 6}


async def test_client_retries_429_with_retry_after(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(submit_rate=1, submit_burst=1)
    async with Client(server.url, token=token(), backoff=0.05) as client:
        loop = asyncio.get_running_loop()
        first = await client.submit("echo", {"x": 1})
        started = loop.time()
        second = await client.submit("echo", {"x": 2})  # 429 first, then accepted
        assert loop.time() - started >= 0.9, "waited for Retry-After"
        assert first.id != second.id
