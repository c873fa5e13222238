"""OpenAI model calls as durable steps: Chat Completions and Responses, on OpenAI or
any server that speaks its protocol (`AsyncOpenAI(base_url=...)`: vLLM, Ollama,
LiteLLM, Azure OpenAI, ...).

    from openai import AsyncOpenAI
    from tether.agents import openai as llm

    client = AsyncOpenAI()                      # the key stays in the client
    reply = await llm.chat(ctx, client, model="gpt-4o-mini", messages=msgs, max_tokens=300)
    reply.choices[0].message.content            # an SDK `ChatCompletion`, as ever

Each call is the SDK's `create` with the same keyword arguments, run as a step: the
answer is recorded, and a replay returns it without calling the model. `stream=True`
reads the stream inside the step (`on_chunk` sees each chunk as it arrives) and records
the final message, which is what the call returns. The SDK is imported only when a
call is made: `pip install 'tether[agents]'`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tether.agents import call
from tether.agents.call import Headers, ModelCall, OnChunk, Reading, count, tell
from tether.agents.limits import AgentLimits, apply_max_tokens
from tether.agents.prices import ModelPrice
from tether.models import Cost
from tether.retry import RetryPolicy

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion
    from openai.types.responses import Response

    from tether.engine.context import Context

PROVIDER = "openai"
_FINAL_EVENTS = {"response.completed", "response.incomplete", "response.failed"}


async def chat(
    ctx: Context,
    client: AsyncOpenAI,
    *,
    model: str,
    messages: Iterable[Any],
    name: str = "openai.chat",
    limits: AgentLimits | None = None,
    prices: Mapping[str, ModelPrice] | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    on_chunk: OnChunk | None = None,
    estimate: Cost | None = None,
    **params: Any,
) -> ChatCompletion:
    """`client.chat.completions.create(model=, messages=, **params)` as the durable
    step `name`; returns the `ChatCompletion` (with `stream=True`, the final one built
    from the chunks, usage included).

    `limits` bounds the agent run (`AgentLimits`), `prices` overrides the price table
    for this call, `retry` and `timeout` are the step's (`ctx.step`), and `estimate`
    what the call may cost, reserved on the budgets before it is sent (default: guessed
    from the request's length and output cap, `tether.agents.call.guess_cost`). The usage
    (`ModelUsage`) is recorded in the step's meta; failures raise `ModelCallError`s
    (`tether.agents.errors`), retried when transient."""
    from openai.types.chat import ChatCompletion

    request = {"model": model, "messages": list(messages), **params}
    apply_max_tokens(request, limits, ("max_tokens", "max_completion_tokens"))
    streamed = bool(request.get("stream"))
    if streamed:
        request.setdefault("stream_options", {"include_usage": True})

    async def send() -> tuple[dict[str, Any], Headers]:
        raw = await _sdk(client).chat.completions.with_raw_response.create(**request)
        answer = await call.parsed(raw)
        if not streamed:
            return answer.to_dict(), raw.headers
        final = ChatStream()
        async for chunk in answer:
            final.add(chunk.to_dict())
            await tell(on_chunk, chunk)
        return final.result(), raw.headers

    model_call = ModelCall(
        PROVIDER,
        "chat.completions",
        model,
        send,
        read_chat,
        streamed,
        secrets(client),
        request,
        ("max_completion_tokens", "max_tokens"),
    )
    data = await call.run(
        ctx,
        model_call,
        name=name,
        limits=limits,
        prices=prices,
        retry=retry,
        timeout=timeout,
        estimate=estimate,
    )
    return ChatCompletion.construct(**data)


async def responses(
    ctx: Context,
    client: AsyncOpenAI,
    *,
    model: str,
    input: Any,
    name: str = "openai.responses",
    limits: AgentLimits | None = None,
    prices: Mapping[str, ModelPrice] | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    on_chunk: OnChunk | None = None,
    estimate: Cost | None = None,
    **params: Any,
) -> Response:
    """`client.responses.create(model=, input=, **params)` as the durable step `name`;
    returns the `Response` (with `stream=True`, the one the stream's last event
    carries). Options as for `chat`."""
    from openai.types.responses import Response

    request = {"model": model, "input": input, **params}
    apply_max_tokens(request, limits, ("max_output_tokens",))
    streamed = bool(request.get("stream"))

    async def send() -> tuple[dict[str, Any], Headers]:
        raw = await _sdk(client).responses.with_raw_response.create(**request)
        answer = await call.parsed(raw)
        if not streamed:
            return answer.to_dict(), raw.headers
        final: dict[str, Any] | None = None
        async for event in answer:
            await tell(on_chunk, event)
            if getattr(event, "type", None) in _FINAL_EVENTS:
                final = event.response.to_dict()
        if final is None:
            raise ResponseFailed({"code": "server_error", "message": "the stream ended early"})
        if final.get("status") == "failed":
            raise ResponseFailed(final.get("error") or {"code": "server_error"})
        return final, raw.headers

    model_call = ModelCall(
        PROVIDER,
        "responses",
        model,
        send,
        read_response,
        streamed,
        secrets(client),
        request,
        ("max_output_tokens",),
    )
    data = await call.run(
        ctx,
        model_call,
        name=name,
        limits=limits,
        prices=prices,
        retry=retry,
        timeout=timeout,
        estimate=estimate,
    )
    return Response.construct(**data)


class ResponseFailed(Exception):
    """A streamed response that ended `failed`: its `error` object as `body`, which
    `tether.agents.errors` classifies by its code."""

    status_code = None

    def __init__(self, body: Mapping[str, Any]) -> None:
        super().__init__(str(body.get("message") or body.get("code") or "response failed"))
        self.body = dict(body)


def _sdk(client: Any) -> Any:
    # Tether retries, durably and visibly (Retry-After honoured): not the SDK in a sleep.
    return client.with_options(max_retries=0)


def secrets(client: Any) -> tuple[str, ...]:
    """The credentials an OpenAI client holds, to keep out of stored error texts."""
    found = (getattr(client, a, None) for a in ("api_key", "azure_ad_token", "auth_token"))
    return tuple(s for s in found if isinstance(s, str) and s)


def read_chat(data: dict[str, Any]) -> Reading:
    """What a chat completion says: tokens, finish reason, a refusal."""
    usage = data.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    finish = choice.get("finish_reason")
    refusal = message.get("refusal") or ("content filter" if finish == "content_filter" else None)
    return Reading(
        served_model=data.get("model"),
        input_tokens=count(usage.get("prompt_tokens")),
        output_tokens=count(usage.get("completion_tokens")),
        cached_input_tokens=count(details.get("cached_tokens")),
        finish_reason=finish,
        refusal=refusal,
    )


def read_response(data: dict[str, Any]) -> Reading:
    """What a response says: tokens, how it ended, a refusal."""
    usage = data.get("usage") or {}
    details = usage.get("input_tokens_details") or {}
    incomplete = (data.get("incomplete_details") or {}).get("reason")
    refusal = None
    for item in data.get("output") or ():
        for part in item.get("content") or () if item.get("type") == "message" else ():
            if part.get("type") == "refusal":
                refusal = part.get("refusal") or "refusal"
    if refusal is None and incomplete == "content_filter":
        refusal = "content filter"
    return Reading(
        served_model=data.get("model"),
        input_tokens=count(usage.get("input_tokens")),
        output_tokens=count(usage.get("output_tokens")),
        cached_input_tokens=count(details.get("cached_tokens")),
        finish_reason=incomplete or data.get("status"),
        refusal=refusal,
    )


class ChatStream:
    """A chat completion built from its stream's chunks (as dicts): the content,
    refusal and tool calls of each choice joined, its finish reason, and the usage of
    the last chunk (`stream_options={"include_usage": True}`, which `chat` asks for)."""

    def __init__(self) -> None:
        self._head: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: Any = None

    def add(self, chunk: dict[str, Any]) -> None:
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if chunk.get(key) is not None:
                self._head.setdefault(key, chunk[key])
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for part in chunk.get("choices") or ():
            index = part.get("index", 0)
            choice = self._choices.setdefault(
                index, {"index": index, "message": {"role": "assistant"}, "finish_reason": None}
            )
            if part.get("finish_reason"):
                choice["finish_reason"] = part["finish_reason"]
            delta = part.get("delta") or {}
            message = choice["message"]
            for key in ("content", "refusal"):
                if delta.get(key):
                    message[key] = (message.get(key) or "") + delta[key]
            for call_delta in delta.get("tool_calls") or ():
                _join_tool_call(message.setdefault("tool_calls", []), call_delta)

    def result(self) -> dict[str, Any]:
        """The completion, as `chat.completions.create` without a stream returns it."""
        choices = []
        for index in sorted(self._choices):
            choice = self._choices[index]
            choice["message"].setdefault("content", None)
            choices.append(choice)
        out = {**self._head, "object": "chat.completion", "choices": choices}
        if self._usage is not None:
            out["usage"] = self._usage
        return out


def _join_tool_call(calls: list[dict[str, Any]], delta: dict[str, Any]) -> None:
    index = delta.get("index", len(calls))
    while len(calls) <= index:
        calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    target = calls[index]
    if delta.get("id"):
        target["id"] = delta["id"]
    function = delta.get("function") or {}
    for key in ("name", "arguments"):
        if function.get(key):
            target["function"][key] += function[key]
