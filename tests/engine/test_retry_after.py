"""A step's retry waits as long as the outside API's `Retry-After` says (seconds or an
HTTP-date, capped at `RETRY_AFTER_MAX`), for the errors of httpx, requests and the
OpenAI and Anthropic SDKs, each against a real local HTTP server (tests/fake_http.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import anthropic
import httpx
import openai
import pytest
import requests

from fake_http import RATE_LIMITED, Reply, ScriptedServer
from helpers import wait_status
from tether import Context, RetryPolicy, TaskStatus, Tether, WaitReason
from tether.retry import RETRY_AFTER_MAX


async def call_httpx(url: str) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(url + "/v1/anything")).raise_for_status()


def call_requests(url: str) -> None:  # sync: runs on the worker's step threads
    requests.post(url + "/v1/anything", timeout=10).raise_for_status()


async def call_openai(url: str) -> None:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="test-key", max_retries=0)
    async with client:
        await client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}]
        )


async def call_anthropic(url: str) -> None:
    client = anthropic.AsyncAnthropic(base_url=url, api_key="test-key", max_retries=0)
    async with client:
        await client.messages.create(
            model="claude-test", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )


CALLERS: dict[str, Callable[[str], Any]] = {
    "httpx": call_httpx,
    "requests": call_requests,
    "openai": call_openai,
    "anthropic": call_anthropic,
}


def _app(
    make_app: Callable[[], Tether], caller: Callable[[str], Any], policy: RetryPolicy
) -> Tether:
    app = make_app()

    @app.workflow("call", retry=policy)
    async def call(ctx: Context, url: str) -> str:
        await ctx.step("call", caller, url)
        return "done"

    return app


async def _wake_in(app: Tether, task_id: str) -> float:
    """Seconds from the failed attempt's start to its retry (the step's `wake_at`)."""
    (step,) = await app.steps(task_id)
    assert step.attempts == 1 and step.wake_at is not None and step.started_at is not None
    return step.wake_at - step.started_at


@pytest.mark.parametrize(
    ("library", "status"),
    [("httpx", 503), ("requests", 429), ("openai", 429), ("anthropic", 529)],
)
async def test_retry_after_seconds_sets_the_retry_and_a_long_one_suspends_the_task(
    make_app: Callable[[], Tether], library: str, status: int
) -> None:
    # The default policy would retry after about a second, in place.
    app = _app(make_app, CALLERS[library], RetryPolicy(max_attempts=3))
    reply = Reply(status, {"Retry-After": "120"}, RATE_LIMITED)
    with ScriptedServer([reply]) as server:
        async with app.worker(poll_interval=0.05):
            handle = await app.submit("call", {"url": server.url})
            await wait_status(app, handle.id, TaskStatus.WAITING)
        task = await app.get(handle.id)
        assert task.wait_reason == WaitReason.RETRY_BACKOFF
        assert 120 <= await _wake_in(app, handle.id) < 125
        assert len(server.seen) == 1
    await app.cancel(handle.id)


async def test_an_http_date_is_honoured(make_app: Callable[[], Tether]) -> None:
    app = _app(make_app, call_requests, RetryPolicy(max_attempts=3))
    when = formatdate(time.time() + 600, usegmt=True)  # one-second resolution
    with ScriptedServer([Reply(503, {"Retry-After": when})]) as server:
        async with app.worker(poll_interval=0.05):
            handle = await app.submit("call", {"url": server.url})
            await wait_status(app, handle.id, TaskStatus.WAITING)
        assert 597 <= await _wake_in(app, handle.id) < 605
    await app.cancel(handle.id)


async def test_an_absurd_retry_after_is_capped(make_app: Callable[[], Tether]) -> None:
    app = _app(make_app, call_openai, RetryPolicy(max_attempts=3))
    with ScriptedServer([Reply(429, {"Retry-After": "99999999"}, RATE_LIMITED)]) as server:
        async with app.worker(poll_interval=0.05):
            handle = await app.submit("call", {"url": server.url})
            await wait_status(app, handle.id, TaskStatus.WAITING)
        assert RETRY_AFTER_MAX <= await _wake_in(app, handle.id) < RETRY_AFTER_MAX + 5
    await app.cancel(handle.id)


async def test_a_short_retry_after_retries_in_place_despite_a_long_policy(
    make_app: Callable[[], Tether],
) -> None:
    # The policy alone would suspend the task for a minute; the server says: now.
    app = _app(make_app, call_httpx, RetryPolicy(max_attempts=3, initial_interval=60))
    replies = [Reply(429, {"Retry-After": "0"}, RATE_LIMITED), Reply(200)]
    with ScriptedServer(replies) as server:
        async with app.worker(poll_interval=0.05):
            handle = await app.submit("call", {"url": server.url})
            assert await handle.result(timeout=10) == "done"
        assert len(server.seen) == 2
    (step,) = await app.steps(handle.id)
    assert step.attempts == 2


async def test_retry_after_ms_is_read_before_retry_after(make_app: Callable[[], Tether]) -> None:
    """The SDKs' millisecond header (`retry-after-ms`), when present, is the precise one."""
    app = _app(make_app, call_anthropic, RetryPolicy(max_attempts=3))
    headers = {"retry-after-ms": "45000", "Retry-After": "46"}
    with ScriptedServer([Reply(429, headers, RATE_LIMITED)]) as server:
        async with app.worker(poll_interval=0.05):
            handle = await app.submit("call", {"url": server.url})
            await wait_status(app, handle.id, TaskStatus.WAITING)
        assert 45 <= await _wake_in(app, handle.id) < 46
    await app.cancel(handle.id)
