"""How model calls fail (`tether.agents.errors`), against the real local provider
through the real SDKs, on both backends: rate limits, overloads and server errors are
retried (after `Retry-After`), context overflows, authentication failures and refusals
are not (the refusal flagged for review); the agent run's limits stop a call before it
is sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest

from fake_models import CHAT, MESSAGES, RESPONSES, Answer, ModelServer, fail, ok, stream_error
from helpers import event_where
from tether import Context, TaskFailedError, TaskStatus, Tether
from tether.agents import REVIEW_KEY, AgentLimits, ModelUsage
from tether.agents import anthropic as claude
from tether.agents import openai as llm

KEY = "sk-test-0123456789abcdef"
HI = [{"role": "user", "content": "hi"}]


async def call(ctx: Context, server: ModelServer, api: str, stream: bool = False, **kw: Any) -> Any:
    async with (
        openai.AsyncOpenAI(base_url=server.openai_url, api_key=KEY, max_retries=0) as oai,
        anthropic.AsyncAnthropic(base_url=server.url, api_key=KEY, max_retries=0) as ant,
    ):
        if api == "chat":
            r = await llm.chat(ctx, oai, model="gpt-4o-mini", messages=HI, stream=stream, **kw)
            return r.choices[0].message.content
        if api == "responses":
            r2 = await llm.responses(ctx, oai, model="gpt-4o", input="hi", stream=stream, **kw)
            return r2.output_text
        kw.setdefault("max_tokens", 20)
        r3 = await claude.messages(
            ctx, ant, model="claude-sonnet-4", messages=HI, stream=stream, **kw
        )
        return r3.content[0].text  # type: ignore[union-attr]


def one_call_app(make_app: Callable[[], Tether], server: ModelServer) -> Tether:
    app = make_app()

    @app.workflow("one")
    async def one(ctx: Context, api: str, stream: bool) -> Any:
        return await call(ctx, server, api, stream)

    return app


async def run_one(app: Tether, api: str, stream: bool = False) -> tuple[str, Any]:
    async with app.worker(poll_interval=0.05):
        handle = await app.submit("one", {"api": api, "stream": stream})
        try:
            return handle.id, await handle.result(timeout=15)
        except TaskFailedError as exc:
            return handle.id, exc


PATHS = {"chat": CHAT, "responses": RESPONSES, "messages": MESSAGES}


@pytest.mark.parametrize(
    ("api", "answer", "error_type", "stream"),
    [
        ("chat", fail(429, "requests", headers={"Retry-After": "1"}), "ModelRateLimited", False),
        ("messages", fail(529, "overloaded_error"), "ModelOverloaded", False),
        ("responses", fail(500, "server_error"), "ModelUnavailable", False),
        ("messages", stream_error("overloaded_error"), "ModelOverloaded", True),
        ("chat", stream_error("server_error", "boom"), "ModelUnavailable", True),
    ],
    ids=["429-retry-after", "529", "500", "overloaded-mid-stream", "error-mid-stream"],
)
async def test_transient_failures_are_retried_and_retry_after_is_honoured(
    make_app: Callable[[], Tether], api: str, answer: Answer, error_type: str, stream: bool
) -> None:
    with ModelServer([answer, ok("second time lucky")]) as server:
        app = one_call_app(make_app, server)
        task_id, result = await run_one(app, api, stream)
        assert result == "second time lucky"
        assert server.count(PATHS[api]) == 2
        gap = server.asked[1].at - server.asked[0].at
    (step,) = await app.steps(task_id)
    (failed,) = step.attempt_errors
    assert (failed.type, failed.transient, failed.classified_by) == (error_type, True, "Transient")
    if "Retry-After" in answer.headers:
        assert failed.reason == "retry_after" and failed.retry_in == 1.0
        assert gap >= 1.0
    usage = ModelUsage.from_meta(step.meta)
    assert usage is not None and usage.output_tokens == 7  # the call that answered


@pytest.mark.parametrize(
    ("api", "answer", "error_type"),
    [
        (
            "chat",
            fail(
                400,
                "invalid_request_error",
                error_code="context_length_exceeded",
                message="This model's maximum context length is 128000 tokens.",
            ),
            "ContextLengthExceeded",
        ),
        (
            "messages",
            fail(400, "invalid_request_error", message="prompt is too long: 250000 tokens"),
            "ContextLengthExceeded",
        ),
        ("chat", fail(401, "invalid_api_key", message="Incorrect API key"), "ModelAuthError"),
        ("messages", fail(401, "authentication_error"), "ModelAuthError"),
        (
            "chat",
            fail(429, "insufficient_quota", error_code="insufficient_quota"),
            "ModelQuotaExceeded",
        ),
        (
            "responses",
            fail(404, "invalid_request_error", message="no such model"),
            "ModelRequestInvalid",
        ),
        (
            "chat",
            fail(400, "invalid_request_error", error_code="content_policy_violation"),
            "ModelRefused",
        ),
    ],
    ids=[
        "openai-context",
        "anthropic-context",
        "openai-401",
        "anthropic-401",
        "quota",
        "404",
        "content-policy",
    ],
)
async def test_permanent_failures_fail_the_step_after_one_request(
    make_app: Callable[[], Tether], api: str, answer: Answer, error_type: str
) -> None:
    with ModelServer([answer]) as server:
        app = one_call_app(make_app, server)
        task_id, result = await run_one(app, api)
        assert server.count() == 1
    assert isinstance(result, TaskFailedError) and result.error_type == error_type
    (step,) = await app.steps(task_id)
    assert step.error is not None and step.error.permanent
    assert "(request req_1)" in step.error.message
    usage = ModelUsage.from_meta(step.meta)
    assert usage is not None and usage.status == answer.status and usage.cost == 0.0
    # a refusal by status (a content-policy 400) is flagged like one in an answer
    assert step.meta.get(REVIEW_KEY) == ("model_refusal" if error_type == "ModelRefused" else None)


@pytest.mark.parametrize(
    ("api", "refusal"),
    [
        ("chat", "I can't help with that."),
        ("chat", "filter"),
        ("responses", "No."),
        ("messages", "I won't do that."),
    ],
    ids=["chat-refusal", "content-filter", "responses-refusal", "anthropic-refusal"],
)
async def test_a_refusal_is_permanent_and_flagged_for_review(
    make_app: Callable[[], Tether], api: str, refusal: str
) -> None:
    with ModelServer([ok(refusal=refusal)]) as server:
        app = one_call_app(make_app, server)
        task_id, result = await run_one(app, api)
        assert server.count() == 1
    assert isinstance(result, TaskFailedError) and result.error_type == "ModelRefused"
    (step,) = await app.steps(task_id)
    assert step.meta[REVIEW_KEY] == "model_refusal"
    usage = ModelUsage.from_meta(step.meta)
    assert usage is not None and usage.output_tokens == 7 and usage.cost  # it was paid for
    event = await event_where(app, task_id, lambda e: e.type == "step.failed")
    assert event.data is not None and event.data[REVIEW_KEY] == "model_refusal"


async def test_max_turns_stops_the_call_past_the_limit_before_it_is_sent(
    make_app: Callable[[], Tether],
) -> None:
    with ModelServer([]) as server:
        app = make_app()

        @app.workflow("loop")
        async def loop(ctx: Context) -> None:
            limits = AgentLimits(max_turns=2, max_tokens=64)
            for _ in range(3):
                await call(ctx, server, "chat", limits=limits)
                await ctx.sleep(0.01)  # a replay between turns counts them again

        async with app.worker(poll_interval=0.05):
            handle = await app.submit("loop", {})
            with pytest.raises(TaskFailedError) as caught:
                await handle.result(timeout=15)
        assert server.count() == 2
        assert [a.body["max_tokens"] for a in server.asked] == [64, 64]  # the limit's default
    assert caught.value.error_type == "AgentLimitExceeded"
    assert "max_turns" in str(caught.value)
    assert (await app.get(handle.id)).status == TaskStatus.FAILED


async def test_the_wall_clock_limit_and_max_tokens_refuse_before_sending(
    make_app: Callable[[], Tether],
) -> None:
    with ModelServer([]) as server:
        app = make_app()

        @app.workflow("slow")
        async def slow(ctx: Context) -> None:
            limits = AgentLimits(max_seconds=0.3)
            await call(ctx, server, "messages", limits=limits)
            await ctx.sleep(0.5)
            await call(ctx, server, "messages", limits=limits)

        @app.workflow("greedy")
        async def greedy(ctx: Context) -> None:
            await call(ctx, server, "messages", limits=AgentLimits(max_tokens=100), max_tokens=500)

        async with app.worker(poll_interval=0.05):
            a = await app.submit("slow", {})
            b = await app.submit("greedy", {})
            with pytest.raises(TaskFailedError, match="max_seconds"):
                await a.result(timeout=15)
            with pytest.raises(TaskFailedError, match="max_tokens=500"):
                await b.result(timeout=15)
        assert server.count() == 1  # the first call of `slow` only
