"""`tether.Client` honours `Retry-After` on 429 and 503, in seconds and as an HTTP-date,
and does not sleep through a wait longer than `max_retry_after`. The server is a real
local HTTP server speaking the Tether API's protocol (tests/fake_http.py); the real
server's own 429 is covered by test_rate_limit_retry_after_from_the_real_server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from email.utils import formatdate

import pytest

from api.live import LiveServer, token
from fake_http import Reply, ScriptedServer
from tether import Client, Task, TaskStatus
from tether.client import ApiError
from tether.retry import RETRY_AFTER_MAX

TASK = Task(
    id="t-1",
    tenant="t1",
    workflow="echo",
    workflow_version=1,
    queue="default",
    priority=0,
    status=TaskStatus.QUEUED,
    input={"x": 1},
    created_at=1.0,
    updated_at=1.0,
).to_json()
BUSY = {"type": "about:blank", "title": "Service Unavailable", "status": 503}


def _gap(server: ScriptedServer) -> float:
    first, second = server.seen[0], server.seen[1]
    return second.at - first.at


async def test_a_503_retry_after_in_seconds_is_waited_for() -> None:
    script = [Reply(503, {"Retry-After": "1"}, BUSY), Reply(200, body=TASK)]
    with ScriptedServer(script) as server:
        async with Client(server.url, token="x", backoff=0.01) as client:
            task = await client.get("t-1")
    assert task.id == "t-1" and len(server.seen) == 2
    assert _gap(server) >= 0.95  # without the header: 0.01 s of backoff


async def test_a_429_retry_after_as_an_http_date_is_waited_for() -> None:
    # Two seconds ahead at one-second resolution: between one and two seconds from now.
    when = formatdate(time.time() + 2, usegmt=True)
    script = [Reply(429, {"Retry-After": when}, BUSY | {"status": 429}), Reply(200, body=TASK)]
    with ScriptedServer(script) as server:
        async with Client(server.url, token="x", backoff=0.01) as client:
            await client.get("t-1")
    assert 0.95 <= _gap(server) < 2.5


async def test_a_wait_longer_than_max_retry_after_raises_at_once() -> None:
    script = [Reply(503, {"Retry-After": "99999999"}, BUSY), Reply(200, body=TASK)]
    with ScriptedServer(script) as server:
        async with Client(server.url, token="x", max_retry_after=60) as client:
            with pytest.raises(ApiError) as caught:
                async with asyncio.timeout(5):
                    await client.get("t-1")
    assert caught.value.status == 503 and caught.value.retry_after == RETRY_AFTER_MAX
    assert len(server.seen) == 1


async def test_rate_limit_retry_after_from_the_real_server(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(submit_rate=1, submit_burst=1)
    async with Client(server.url, token=token("t1", ("submitter",))) as client:
        first = await client.submit("echo", {"x": 1})
        started = time.monotonic()
        second = await client.submit("echo", {"x": 2})  # 429, Retry-After: 1, then 202
    assert first.id != second.id
    assert time.monotonic() - started >= 0.9
