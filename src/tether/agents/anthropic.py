"""Anthropic model calls as durable steps: the Messages API.

    from anthropic import AsyncAnthropic
    from tether.agents import anthropic as claude

    client = AsyncAnthropic()                   # the key stays in the client
    reply = await claude.messages(
        ctx, client, model="claude-sonnet-4-5", max_tokens=1024, messages=msgs
    )
    reply.content[0].text                       # an SDK `Message`, as ever

The call is the SDK's `messages.create` with the same keyword arguments, run as a
step: the answer is recorded, and a replay returns it without calling the model.
`stream=True` streams it (`messages.stream`) inside the step, `on_chunk` seeing each
event as it arrives, and records the final message, which is what the call returns.
An overload reported inside the stream is a transient failure like a 529. The SDK is
imported only when a call is made: `pip install 'tether[agents]'`.
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
    from anthropic import AsyncAnthropic
    from anthropic.types import Message

    from tether.engine.context import Context

PROVIDER = "anthropic"


async def messages(
    ctx: Context,
    client: AsyncAnthropic,
    *,
    model: str,
    messages: Iterable[Any],
    max_tokens: int | None = None,
    name: str = "anthropic.messages",
    limits: AgentLimits | None = None,
    prices: Mapping[str, ModelPrice] | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    on_chunk: OnChunk | None = None,
    estimate: Cost | None = None,
    **params: Any,
) -> Message:
    """`client.messages.create(model=, max_tokens=, messages=, **params)` as the
    durable step `name`; returns the `Message` (with `stream=True`, the final one).

    `max_tokens` is required by the API: give it, or `limits.max_tokens`
    (`AgentLimits`). `prices` overrides the price table for this call, `retry` and
    `timeout` are the step's (`ctx.step`), `estimate` what the call may cost, reserved on
    the budgets before it is sent (default: guessed, as for `tether.agents.openai.chat`).
    The usage (`ModelUsage`) is recorded in the step's meta; failures raise
    `ModelCallError`s (`tether.agents.errors`), retried when transient."""
    from anthropic.types import Message

    request: dict[str, Any] = {"model": model, "messages": list(messages), **params}
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
    apply_max_tokens(request, limits, ("max_tokens",))
    if request.get("max_tokens") is None:
        raise ValueError("an Anthropic call needs max_tokens (or AgentLimits.max_tokens)")
    streamed = bool(request.pop("stream", False))

    async def send() -> tuple[dict[str, Any], Headers]:
        sdk = client.with_options(max_retries=0)  # Tether retries, durably
        if not streamed:
            raw = await sdk.messages.with_raw_response.create(**request)
            answer = await call.parsed(raw)
            return answer.to_dict(), raw.headers
        async with sdk.messages.stream(**request) as stream:
            async for event in stream:
                await tell(on_chunk, event)
            final = await stream.get_final_message()
            return final.to_dict(), stream.response.headers

    model_call = ModelCall(
        PROVIDER,
        "messages",
        model,
        send,
        read_message,
        streamed,
        secrets(client),
        request,
        ("max_tokens",),
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
    return Message.construct(**data)


def secrets(client: Any) -> tuple[str, ...]:
    """The credentials an Anthropic client holds, to keep out of stored error texts."""
    found = (getattr(client, a, None) for a in ("api_key", "auth_token"))
    return tuple(s for s in found if isinstance(s, str) and s)


def read_message(data: dict[str, Any]) -> Reading:
    """What a message says: tokens (cache reads and writes counted in the input), its
    stop reason, a refusal (`stop_reason: "refusal"`)."""
    usage = data.get("usage") or {}
    read = count(usage.get("cache_read_input_tokens"))
    written = count(usage.get("cache_creation_input_tokens"))
    stop = data.get("stop_reason")
    refusal = None
    if stop == "refusal":
        texts = [b.get("text") for b in data.get("content") or () if b.get("type") == "text"]
        refusal = " ".join(t for t in texts if t) or "refusal"
    return Reading(
        served_model=data.get("model"),
        input_tokens=count(usage.get("input_tokens")) + read + written,
        output_tokens=count(usage.get("output_tokens")),
        cached_input_tokens=read,
        cache_write_tokens=written,
        finish_reason=stop,
        refusal=refusal,
    )
