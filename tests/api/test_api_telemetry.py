"""`api_telemetry` (ADR 80): FastAPI's OpenTelemetry spans for API requests only when
asked for. A recording tracer provider, set as the process's global one, stands in for
an OpenTelemetry SDK; with the setting off FastAPI must not ask it for anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext

from api.live import LiveServer, auth


class RecordingTracer(trace.Tracer):
    def __init__(self, spans: list[str]) -> None:
        self.spans = spans

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> trace.Span:
        self.spans.append(name)
        return NonRecordingSpan(SpanContext(trace_id=1, span_id=1, is_remote=False))

    def start_as_current_span(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.spans.append(name)
        return trace.use_span(self.start_span(name), end_on_exit=True)


class RecordingProvider(trace.TracerProvider):
    def __init__(self) -> None:
        self.spans: list[str] = []

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return RecordingTracer(self.spans)


PROVIDER = RecordingProvider()
trace.set_tracer_provider(PROVIDER)  # once per process: other tests keep the setting off


def _submit(server: LiveServer) -> None:
    answer = httpx.post(
        f"{server.url}/v1/tasks",
        json={"workflow": "echo", "input": {"x": 1}},
        headers=auth(),
    )
    assert answer.status_code == 202, answer.text


def test_requests_are_traced_only_with_api_telemetry(
    start_server: Callable[..., LiveServer],
) -> None:
    off = start_server(workers=False)
    PROVIDER.spans.clear()  # what other tests' own ASGI apps (receivers) may have traced
    _submit(off)
    assert PROVIDER.spans == []  # FastAPI did not even ask for a tracer
    on = start_server(workers=False, api_telemetry=True)
    _submit(on)
    assert "fastapi.endpoint" in PROVIDER.spans, PROVIDER.spans
