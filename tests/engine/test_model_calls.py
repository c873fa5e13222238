"""Model calls as durable steps (`tether.agents`), against a real local provider
(tests/fake_models.py) through the real OpenAI and Anthropic SDKs, on both backends:
the answer is recorded and a replay does not call the model again (counted at the
server); usage, cost, request id and finish reason land on the step and its event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest

from fake_models import CHAT, MESSAGES, RESPONSES, ModelServer, ok
from helpers import event_where, wait_status
from tether import Context, TaskStatus, Tether
from tether.agents import META_KEY, ModelPrice, ModelUsage
from tether.agents import anthropic as claude
from tether.agents import openai as llm

KEY = "sk-test-0123456789abcdef"
API = {"chat": CHAT, "responses": RESPONSES, "messages": MESSAGES}


def clients(server: ModelServer) -> tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]:
    return (
        openai.AsyncOpenAI(base_url=server.openai_url, api_key=KEY, max_retries=0),
        anthropic.AsyncAnthropic(base_url=server.url, api_key=KEY, max_retries=0),
    )


Clients = tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]


async def ask(ctx: Context, sdk: Clients, api: str, stream: bool, seen: list[Any]) -> str:
    """One call of `api`, the answer's text."""
    oai, ant = sdk
    if api == "chat":
        completion = await llm.chat(
            ctx,
            oai,
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=50,
            stream=stream,
            on_chunk=seen.append,
        )
        assert isinstance(completion, openai.types.chat.ChatCompletion)
        return completion.choices[0].message.content or ""
    if api == "responses":
        response = await llm.responses(
            ctx, oai, model="gpt-4o-mini", input="hi", stream=stream, on_chunk=seen.append
        )
        assert isinstance(response, openai.types.responses.Response)
        return response.output[0].content[0].text  # type: ignore[union-attr]
    message = await claude.messages(
        ctx,
        ant,
        model="claude-3-5-haiku-latest",
        max_tokens=50,
        messages=[{"role": "user", "content": "hi"}],
        stream=stream,
        on_chunk=seen.append,
    )
    assert isinstance(message, anthropic.types.Message)
    return message.content[0].text  # type: ignore[union-attr]


def build(make_app: Callable[[], Tether], sdk: Clients, seen: list[Any]) -> Tether:
    app = make_app()

    @app.workflow("agent")
    async def agent(ctx: Context, api: str, stream: bool) -> dict[str, str]:
        first = await ask(ctx, sdk, api, stream, seen)
        await ctx.wait_for_signal("go")  # suspends: the run after it replays the call
        return {"text": first}

    return app


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
async def test_a_model_call_is_recorded_and_replayed_without_calling_the_model(
    make_app: Callable[[], Tether], api: str, stream: bool
) -> None:
    seen: list[Any] = []
    text = "The tide turns twice a day."
    with ModelServer([ok(text, input_tokens=1200, output_tokens=300, cached_tokens=200)]) as server:
        sdk = clients(server)
        app = build(make_app, sdk, seen)
        async with sdk[0], sdk[1], app.worker(poll_interval=0.05):
            handle = await app.submit("agent", {"api": api, "stream": stream})
            await wait_status(app, handle.id, TaskStatus.WAITING)
            await app.signal(handle.id, "go", None)
            assert await handle.result(timeout=10) == {"text": text}
        assert server.count(API[api]) == 1  # the replay after the signal sent nothing
        asked = server.asked[0]
        assert asked.body.get("stream", False) is stream
        assert (len(seen) > 1) is stream  # chunks seen as they came, once

    step = (await app.steps(handle.id))[0]
    usage = ModelUsage.from_meta(step.meta)
    assert usage is not None
    provider = "anthropic" if api == "messages" else "openai"
    assert (usage.provider, usage.streamed) == (provider, stream)
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) == (1200, 300, 200)
    assert usage.request_id == "req_1"
    assert usage.served_model is not None and usage.served_model.endswith("-2024-07-18")
    price = app.model_prices.lookup(usage.model)
    assert price is not None
    assert usage.cost == price.cost(1200, 300, 200) and usage.cost > 0
    assert usage.finish_reason == {"chat": "stop", "responses": "completed"}.get(api, "end_turn")
    event = await event_where(app, handle.id, lambda e: e.type == "step.succeeded")
    assert event.data is not None and event.data[META_KEY] == usage.to_meta()


async def test_prices_come_from_the_settings_then_the_app_then_the_call(
    make_app: Callable[[], Tether],
) -> None:
    with ModelServer([]) as server:
        oai, ant = clients(server)
        await ant.close()
        app = make_app()
        app.model_prices.set("house-model", input=1.0, output=2.0)

        @app.workflow("priced")
        async def priced(ctx: Context) -> None:
            msgs = [{"role": "user", "content": "hi"}]
            await llm.chat(ctx, oai, model="house-model", messages=msgs, name="app")
            prices = {"house-model": ModelPrice(input=10.0, output=20.0)}
            await llm.chat(ctx, oai, model="house-model", messages=msgs, prices=prices, name="call")
            await llm.chat(ctx, oai, model="who-knows", messages=msgs, name="unknown")

        async with oai, app.worker(poll_interval=0.05):
            handle = await app.submit("priced", {})
            await handle.result(timeout=10)
    usages = [ModelUsage.from_meta(s.meta) for s in await app.steps(handle.id)]
    # 11 tokens in, 7 out (the fake's defaults); served as "house-model-2024-07-18"
    assert [u.cost if u else "-" for u in usages] == [
        pytest.approx((11 * 1.0 + 7 * 2.0) / 1e6),
        pytest.approx((11 * 10.0 + 7 * 20.0) / 1e6),
        None,
    ]


async def test_a_chat_stream_joins_tool_calls_and_records_the_final_message(
    make_app: Callable[[], Tether],
) -> None:
    with ModelServer([ok("Calling the tool now.")]) as server:
        oai, ant = clients(server)
        await ant.close()
        app = make_app()

        @app.workflow("tools")
        async def tools(ctx: Context) -> dict[str, Any]:
            reply = await llm.chat(
                ctx,
                oai,
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "x"}],
                stream=True,
            )
            return reply.to_dict()

        async with oai, app.worker(poll_interval=0.05):
            handle = await app.submit("tools", {})
            result = await handle.result(timeout=10)
    (step,) = await app.steps(handle.id)
    assert step.result == result  # what the call returned is what was recorded
    assert result["object"] == "chat.completion"
    assert result["choices"][0]["message"]["content"] == "Calling the tool now."
    assert result["usage"]["prompt_tokens"] == 11  # include_usage was asked for
    assert server.asked[0].body["stream_options"] == {"include_usage": True}
