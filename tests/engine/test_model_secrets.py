"""The API key of a model call is stored nowhere: not in the step's record, its events
or the logs, even when a careless server echoes it back in an error message (the fake
provider does, on purpose). The SQLite database file is read byte by byte after a
run that succeeded and one that failed; a control shows that a step calling the SDK
itself, without the wrapper, would have stored it."""

from __future__ import annotations

import logging
from pathlib import Path

import anthropic
import openai
import pytest

from fake_models import ModelServer, fail, ok
from tether import Context, TaskFailedError, Tether
from tether.agents import anthropic as claude
from tether.agents import openai as llm

KEY = "sk-canary-5f1d9a0c7b3e42d8a6"
HI = [{"role": "user", "content": "hi"}]
ECHO = "Incorrect API key provided: {auth}"


def database_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def build(path: Path, server: ModelServer) -> Tether:
    app = Tether(f"sqlite:///{path}")

    @app.workflow("wrapped")
    async def wrapped(ctx: Context) -> None:
        async with (
            openai.AsyncOpenAI(base_url=server.openai_url, api_key=KEY) as oai,
            anthropic.AsyncAnthropic(base_url=server.url, api_key=KEY) as ant,
        ):
            await llm.chat(ctx, oai, model="gpt-4o-mini", messages=HI, stream=True)
            await claude.messages(ctx, ant, model="claude-sonnet-4", messages=HI, max_tokens=9)
            await llm.chat(ctx, oai, model="gpt-4o-mini", messages=HI)  # 401, echoing the key

    async def bare() -> None:
        async with openai.AsyncOpenAI(
            base_url=server.openai_url, api_key=KEY, max_retries=0
        ) as oai:
            await oai.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]

    @app.workflow("bare")
    async def bare_flow(ctx: Context) -> None:
        await ctx.step("bare", bare)

    return app


async def test_the_api_key_is_nowhere_in_the_database_or_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "agents.db"
    with ModelServer([ok(), ok(), fail(401, "invalid_api_key", message=ECHO)]) as server:
        app = build(path, server)
        try:
            async with app.worker(poll_interval=0.05):
                handle = await app.submit("wrapped", {})
                with pytest.raises(TaskFailedError, match="ModelAuthError"):
                    await handle.result(timeout=15)
            steps = await app.steps(handle.id)
        finally:
            await app.close()
        assert server.count() == 3
        assert all(
            KEY in (a.headers.get("authorization") or a.headers.get("x-api-key") or "")
            for a in server.asked
        )  # the key did go to the server
    assert steps[2].error is not None and "[redacted]" in steps[2].error.message
    assert KEY.encode() not in database_bytes(path)
    assert KEY not in caplog.text


async def test_control_a_bare_sdk_call_would_have_stored_the_echoed_key(tmp_path: Path) -> None:
    path = tmp_path / "bare.db"
    with ModelServer([fail(401, "invalid_api_key", message=ECHO)]) as server:
        app = build(path, server)
        try:
            async with app.worker(poll_interval=0.05):
                handle = await app.submit("bare", {})
                with pytest.raises(TaskFailedError):
                    await handle.result(timeout=15)
        finally:
            await app.close()
    assert KEY.encode() in database_bytes(path)  # so the test above can fail
