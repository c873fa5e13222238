"""`tether.agents` without a database: prices, the failure classes of real SDK
exceptions, stream joining, limits, and that `import tether` needs no SDK."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

import tether
from tether import ConfigError, StepInfo, load_settings
from tether.agents import (
    DEFAULT_PRICES,
    AgentLimitExceeded,
    AgentLimits,
    ContextLengthExceeded,
    ModelAuthError,
    ModelOverloaded,
    ModelPrice,
    ModelQuotaExceeded,
    ModelRateLimited,
    ModelRefused,
    ModelRequestInvalid,
    ModelUnavailable,
    PriceTable,
    classify_model_error,
)
from tether.agents.errors import model_failure, scrub
from tether.agents.limits import apply_max_tokens
from tether.agents.openai import ChatStream
from tether.errors import classify


def test_dated_and_latest_model_names_find_their_price() -> None:
    assert DEFAULT_PRICES.lookup("gpt-4o-mini-2024-07-18") == DEFAULT_PRICES["gpt-4o-mini"]
    assert DEFAULT_PRICES.lookup("claude-sonnet-4-20250514") == DEFAULT_PRICES["claude-sonnet-4"]
    assert DEFAULT_PRICES.lookup("claude-3-5-haiku-latest") == DEFAULT_PRICES["claude-3-5-haiku"]
    assert DEFAULT_PRICES.lookup("gpt-4o-mini-fancy") is None  # not guessed at
    assert DEFAULT_PRICES.lookup("llama3") is None and DEFAULT_PRICES.lookup(None) is None


def test_cost_prices_cached_and_cache_writing_tokens_apart() -> None:
    price = ModelPrice(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    # 1000 input of which 600 read from the cache and 100 written to it, 200 output
    assert price.cost(1000, 200, 600, 100) == pytest.approx(
        (300 * 3.0 + 600 * 0.3 + 100 * 3.75 + 200 * 15.0) / 1e6
    )
    assert ModelPrice(1.0, 2.0).cost(10, 10, cached_input=5) == pytest.approx(30 / 1e6)
    with pytest.raises(ValueError, match="input"):
        ModelPrice(-1.0, 1.0)


def test_the_model_prices_setting_overrides_and_adds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "TETHER_MODEL_PRICES",
        '{"gpt-4o": {"input": 2, "output": 8}, "mine": {"input": 0.1, '
        '"output": 0.2, "cached_input": 0.01}}',
    )
    table = PriceTable.from_config(load_settings().model_prices)
    assert table["gpt-4o"] == ModelPrice(2.0, 8.0)
    assert table.lookup("mine-latest") == ModelPrice(0.1, 0.2, 0.01)
    assert table["gpt-4o-mini"] == DEFAULT_PRICES["gpt-4o-mini"]
    assert DEFAULT_PRICES["gpt-4o"] == ModelPrice(2.50, 10.00, 1.25)  # untouched
    for bad in (
        {"m": {"input": 1}},
        {"m": {"input": 1, "output": 1, "x": 2}},
        {"m": 3},
        {"m": {"input": "lots", "output": 1}},
    ):
        with pytest.raises(ConfigError, match=r"model_prices\.m"):
            PriceTable.from_config(bad)


REQUEST = httpx.Request("POST", "https://api.example.test/v1/x")


def sdk_error(
    sdk: str, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Exception:
    """The exception the SDK itself raises for this answer."""
    response = httpx.Response(status, request=REQUEST, json=body, headers=headers or {})
    if sdk == "openai":
        client = openai.OpenAI(api_key="k", base_url="https://api.example.test/v1")
        return client._make_status_error_from_response(response)  # type: ignore[no-any-return]
    ant = anthropic.Anthropic(api_key="k", base_url="https://api.example.test")
    return ant._make_status_error_from_response(response)


def oai(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code}}


def ant(type_: str, message: str = "m") -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


@pytest.mark.parametrize(
    ("sdk", "status", "body", "cls"),
    [
        ("openai", 429, oai("slow down", "requests", "rate_limit_exceeded"), ModelRateLimited),
        (
            "openai",
            429,
            oai("quota", "insufficient_quota", "insufficient_quota"),
            ModelQuotaExceeded,
        ),
        ("anthropic", 429, ant("rate_limit_error"), ModelRateLimited),
        ("anthropic", 529, ant("overloaded_error"), ModelOverloaded),
        ("openai", 503, oai("busy", "server_error"), ModelUnavailable),
        ("anthropic", 500, ant("api_error"), ModelUnavailable),
        (
            "openai",
            400,
            oai(
                "maximum context length is 8192 tokens",
                "invalid_request_error",
                "context_length_exceeded",
            ),
            ContextLengthExceeded,
        ),
        (
            "anthropic",
            400,
            ant("invalid_request_error", "prompt is too long: 300000 tokens"),
            ContextLengthExceeded,
        ),
        (
            "openai",
            400,
            oai("flagged", "invalid_request_error", "content_policy_violation"),
            ModelRefused,
        ),
        ("openai", 401, oai("bad key", "invalid_request_error", "invalid_api_key"), ModelAuthError),
        ("anthropic", 403, ant("permission_error"), ModelAuthError),
        (
            "anthropic",
            400,
            ant("invalid_request_error", "max_tokens: field required"),
            ModelRequestInvalid,
        ),
    ],
)
def test_sdk_errors_become_their_failure_class(
    sdk: str, status: int, body: dict[str, Any], cls: type[Exception]
) -> None:
    exc = sdk_error(sdk, status, body, {"x-request-id": "req_9", "request-id": "req_9"})
    failure = model_failure(exc, sdk)
    assert type(failure) is cls
    assert failure.status == status and failure.request_id == "req_9"
    assert classify(failure).transient is issubclass(
        cls, (ModelRateLimited, ModelOverloaded, ModelUnavailable)
    )
    assert failure.review is (cls is ModelRefused)


def test_retry_after_rides_on_the_transient_class() -> None:
    exc = sdk_error("anthropic", 529, ant("overloaded_error"), {"retry-after": "7"})
    failure = model_failure(exc, "anthropic")
    assert isinstance(failure, ModelOverloaded) and failure.retry_after == 7.0


def test_the_classifier_corrects_the_default_rules_where_they_are_wrong() -> None:
    quota = sdk_error("openai", 429, oai("quota", "insufficient_quota", "insufficient_quota"))
    assert classify(quota).transient is True  # the generic HTTP rule would retry it
    assert classify(quota, [classify_model_error]).transient is False
    # An overload inside a stream arrives with the stream's status, 200
    mid_stream = anthropic.APIStatusError(
        "Overloaded", response=httpx.Response(200, request=REQUEST), body=ant("overloaded_error")
    )
    assert classify(mid_stream).transient is False
    assert classify(mid_stream, [classify_model_error]).transient is True
    assert classify_model_error(openai.APIConnectionError(request=REQUEST)) is True
    assert classify_model_error(ValueError("a bug")) is None


def test_scrub_cuts_every_secret_out() -> None:
    key = "sk-live-abcdefgh12345678"
    assert scrub(f"bad key {key}, again {key}", [key, "", "short"]) == (
        "bad key [redacted], again [redacted]"
    )
    exc = sdk_error("openai", 401, oai(f"Incorrect API key provided: {key}", "x"))
    failure = model_failure(exc, "openai", [key])
    assert failure is not None and key not in str(failure) and "[redacted]" in str(failure)


def test_a_chat_stream_joins_content_and_tool_calls() -> None:
    stream = ChatStream()
    head = {"id": "c1", "created": 5, "model": "gpt-x", "object": "chat.completion.chunk"}
    deltas: list[dict[str, Any]] = [
        {"role": "assistant", "content": "Let "},
        {"content": "me look."},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "search", "arguments": '{"q": '},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '"tides"}'}}]},
        {
            "tool_calls": [
                {"index": 1, "id": "call_2", "function": {"name": "now", "arguments": "{}"}}
            ]
        },
    ]
    for delta in deltas:
        stream.add({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    stream.add({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    stream.add({**head, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    out = stream.result()
    (choice,) = out["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me look."
    calls = choice["message"]["tool_calls"]
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("call_1", "search", '{"q": "tides"}'),
        ("call_2", "now", "{}"),
    ]
    assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 4}
    assert out["object"] == "chat.completion" and out["id"] == "c1"
    completion = openai.types.chat.ChatCompletion.construct(**out)
    assert completion.choices[0].message.tool_calls[1].function.name == "now"  # type: ignore[index, union-attr]


def test_agent_limits_are_positive_and_max_tokens_is_a_default_and_a_cap() -> None:
    with pytest.raises(ValueError, match="max_turns"):
        AgentLimits(max_turns=0)
    request: dict[str, Any] = {}
    apply_max_tokens(request, AgentLimits(max_tokens=256), ("max_tokens", "max_completion_tokens"))
    assert request == {"max_tokens": 256}
    request = {"max_completion_tokens": 100}
    apply_max_tokens(request, AgentLimits(max_tokens=256), ("max_tokens", "max_completion_tokens"))
    assert request == {"max_completion_tokens": 100}
    with pytest.raises(AgentLimitExceeded, match="max_output_tokens=999") as caught:
        apply_max_tokens(
            {"max_output_tokens": 999}, AgentLimits(max_tokens=256), ("max_output_tokens",)
        )
    assert caught.value.limit == "max_tokens"


def test_annotate_refuses_what_cannot_be_stored() -> None:
    info = StepInfo("t", "default", 1, "s", 1, "k")
    info.annotate(model_call={"tokens": 3})
    with pytest.raises(TypeError):
        info.annotate(bad=object())
    assert info.notes == {"model_call": {"tokens": 3}}


def test_tether_and_tether_agents_import_without_the_sdks() -> None:
    code = (
        "import sys\n"
        "sys.modules['openai'] = None\n"  # `import openai` now raises ImportError
        "sys.modules['anthropic'] = None\n"
        "import tether, tether.agents, tether.agents.openai, tether.agents.anthropic\n"
        "assert tether.Tether('sqlite:///:memory:').model_prices['gpt-4o']\n"
        "print('ok')\n"
    )
    source = str(Path(tether.__file__).resolve().parent.parent)  # this tree's tether
    env = {**os.environ, "PYTHONPATH": source}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
