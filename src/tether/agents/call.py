"""A model call as a durable step: what every provider wrapper shares.

A wrapper (`tether.agents.openai`, `tether.agents.anthropic`) describes its call as a
`ModelCall`: how to send it (returning the answer's JSON and headers) and how to read
an answer (`Reading`). `run` then checks the agent run's limits, runs the call as a
step (a replay returns the recorded answer and sends nothing), turns the SDK's failure
into a `ModelCallError`, and records the call's `ModelUsage` on the step with
`record_spend`, the one place a model call's cost is handed on.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from tether.agents.errors import ModelRefused, model_failure, scrub
from tether.agents.limits import AgentLimits, begin_turn
from tether.agents.prices import ModelPrice, PriceTable
from tether.agents.usage import META_KEY, REVIEW_KEY, ModelUsage
from tether.engine.context import StepInfo, current_step
from tether.models import Cost
from tether.retry import RetryPolicy

if TYPE_CHECKING:
    from tether.engine.context import Context


@dataclass(frozen=True)
class Reading:
    """What an answer says of itself (read by the wrapper of its provider)."""

    served_model: str | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    finish_reason: str | None = None
    refusal: str | None = None
    """Why the model refused (its words or the finish reason), None if it did not."""


Headers = Mapping[str, str]

OnChunk = Callable[[Any], Any]
"""Called with each chunk or event of a streamed answer as it arrives, inside the step
(so never on replay); may be async."""


async def tell(on_chunk: OnChunk | None, item: Any) -> None:
    """Hand a stream's chunk to `on_chunk`, if there is one."""
    if on_chunk is not None:
        result = on_chunk(item)
        if inspect.isawaitable(result):
            await result


@dataclass(frozen=True)
class ModelCall:
    """One call, as a wrapper describes it to `run`."""

    provider: str
    operation: str
    model: str
    send: Callable[[], Awaitable[tuple[dict[str, Any], Headers]]]
    """Send the request; the answer's JSON (a stream read to its end) and headers."""
    read: Callable[[dict[str, Any]], Reading]
    streamed: bool
    secrets: tuple[str, ...]
    """What must never be stored: the client's API key(s), cut out of error texts."""
    request: Mapping[str, Any] = field(default_factory=dict)
    """The request's keywords, which the call's default estimate is guessed from."""
    max_output: tuple[str, ...] = ()
    """The request's keywords that cap its output tokens (`max_tokens`, ...)."""


async def parsed(raw: Any) -> Any:
    """`raw.parse()` of an SDK's raw response: sync in some SDK versions, async in
    others."""
    value = raw.parse()
    return await value if inspect.isawaitable(value) else value


def request_id(headers: Headers) -> str | None:
    """The provider's request id from the answer's headers."""
    return headers.get("x-request-id") or headers.get("request-id")


def record_spend(info: StepInfo | None, usage: ModelUsage, review: str | None = None) -> None:
    """Record a model call's usage and cost on its step (meta `model_call`, and so its
    event), and the reason it wants review if it does.

    This is the one place a model call's spend is handed on: it is charged to the
    step (`StepInfo.charge`: `usage.cost`, the same figure the step records, and its
    input and output tokens), which books it on the task's, tenant's and workflow's
    budgets when the attempt ends (docs/flow-control.md). A model the price table does
    not know costs nothing in dollars; its tokens still count."""
    if info is None:  # called outside a step: nothing durable to record it on
        return
    notes: dict[str, Any] = {META_KEY: usage.to_meta()}
    if review is not None:
        notes[REVIEW_KEY] = review
    info.annotate(**notes)
    info.charge(usd=usage.cost or 0.0, tokens=usage.input_tokens + usage.output_tokens)


def guess_cost(table: PriceTable, call: ModelCall) -> Cost:
    """A call's default estimate, reserved on the budgets before it is sent: its
    input's tokens guessed from the request's length (four characters a token), plus
    the most output it allows (0 when the request sets no cap), at the price of the
    requested model (0 dollars when the table does not know it)."""
    capped = (call.request.get(k) for k in call.max_output)
    most = next((v for v in capped if isinstance(v, int) and v > 0), 0)
    try:
        size = len(orjson.dumps(call.request, default=str))
    except TypeError:
        size = 0
    prompt = size // 4
    price = table.lookup(call.model)
    usd = 0.0 if price is None else price.cost(prompt, most)
    return Cost(usd=usd, tokens=prompt + most)


def price_table(ctx: Context, prices: Mapping[str, ModelPrice] | None) -> PriceTable:
    """The prices a call is costed at: the app's table, with `prices` on top."""
    table = ctx.model_prices
    return table if not prices else table.merged(prices)


async def run(
    ctx: Context,
    call: ModelCall,
    *,
    name: str,
    limits: AgentLimits | None,
    prices: Mapping[str, ModelPrice] | None,
    retry: RetryPolicy | None,
    timeout: float | None,
    estimate: Cost | None = None,
) -> dict[str, Any]:
    """Run `call` as the durable step `name` and return its answer's JSON. The step
    declares `estimate` (default: `guess_cost`), reserved on the budgets first."""
    begin_turn(ctx, limits)
    table = price_table(ctx, prices)

    async def attempt() -> dict[str, Any]:
        info = current_step()
        started = time.monotonic()
        try:
            data, headers = await call.send()
        except Exception as exc:
            failure = model_failure(exc, call.provider, call.secrets)
            if failure is None:
                raise
            usage = _failed(call, failure.status, failure.request_id, started)
            record_spend(info, usage, review="model_refusal" if failure.review else None)
            raise failure from None  # its text is scrubbed; the SDK's may hold a key
        reading = call.read(data)
        price = table.lookup(reading.served_model) or table.lookup(call.model)
        cost = None
        if price is not None:
            cost = price.cost(
                reading.input_tokens,
                reading.output_tokens,
                reading.cached_input_tokens,
                reading.cache_write_tokens,
            )
        usage = ModelUsage(
            provider=call.provider,
            operation=call.operation,
            model=call.model,
            served_model=reading.served_model,
            input_tokens=reading.input_tokens,
            output_tokens=reading.output_tokens,
            cached_input_tokens=reading.cached_input_tokens,
            cache_write_tokens=reading.cache_write_tokens,
            cost=cost,
            latency=round(time.monotonic() - started, 6),
            request_id=request_id(headers),
            finish_reason=reading.finish_reason,
            streamed=call.streamed,
        )
        if reading.refusal is not None:
            record_spend(info, usage, review="model_refusal")
            text = scrub(reading.refusal, call.secrets)[:500]
            raise ModelRefused(
                f"{call.provider} model {reading.served_model or call.model} refused: {text}",
                provider=call.provider,
                code=reading.finish_reason,
                request_id=usage.request_id,
            )
        record_spend(info, usage)
        return data

    result: dict[str, Any] = await ctx.step(
        name,
        attempt,
        retry=retry,
        timeout=timeout,
        integration=call.provider,
        estimate=guess_cost(table, call) if estimate is None else estimate,
    )
    return result


def _failed(call: ModelCall, status: int | None, rid: str | None, started: float) -> ModelUsage:
    return ModelUsage(
        provider=call.provider,
        operation=call.operation,
        model=call.model,
        served_model=None,
        input_tokens=0,
        output_tokens=0,
        cached_input_tokens=0,
        cache_write_tokens=0,
        cost=0.0,
        latency=round(time.monotonic() - started, 6),
        request_id=rid,
        finish_reason=None,
        streamed=call.streamed,
        status=status,
    )


def count(value: Any) -> int:
    """A token count from an answer's usage (absent or null: 0)."""
    return value if isinstance(value, int) and value >= 0 else 0
