"""A real local model provider: an HTTP server on 127.0.0.1 (random port) that speaks
the OpenAI (Chat Completions, Responses) and Anthropic (Messages) protocols, answers
from a script, and counts what it was asked.

    with ModelServer([fail(429, headers={"Retry-After": "1"}), ok("hi")]) as server:
        AsyncOpenAI(base_url=server.openai_url, api_key="k", max_retries=0)
        AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0)

Each request takes the next answer of the script; once it is spent, every request gets
`ok()`. An answer is shaped for the API it answers (a chat completion, a response, a
message, or that API's error body) and streamed as that API streams (server-sent
events) when the request says `"stream": true`. Every answer carries a request id
(`x-request-id` and `request-id`: `req_<n>`). It runs on a thread, so a worker in
another process can call it too (the crash test).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT, RESPONSES, MESSAGES = "/v1/chat/completions", "/v1/responses", "/v1/messages"


@dataclass(frozen=True)
class Answer:
    """One scripted answer: success (`ok`) or an error (`fail`), or an error that comes
    inside a stream that has started (`stream_error`)."""

    status: int = 200
    text: str = "Hello from the fake model."
    input_tokens: int = 11
    output_tokens: int = 7
    cached_tokens: int = 0
    model: str | None = None
    """The served model (default: the requested one with a date suffix)."""
    finish: str | None = None
    refusal: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    mid_stream: bool = False


def ok(text: str = "Hello from the fake model.", **kw: Any) -> Answer:
    return Answer(text=text, **kw)


def fail(status: int, error_type: str = "api_error", **kw: Any) -> Answer:
    return Answer(status=status, error_type=error_type, **kw)


def stream_error(error_type: str = "overloaded_error", message: str = "Overloaded") -> Answer:
    return Answer(error_type=error_type, message=message, mid_stream=True)


@dataclass(frozen=True)
class Asked:
    """One request the server received."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float


class ModelServer:
    """The fake provider; a context manager (`with ModelServer(script) as server`)."""

    def __init__(self, script: list[Answer] | None = None) -> None:
        self.script = list(script or [])
        self.asked: list[Asked] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms stall

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                n, answer = server._take(self.path, body, headers)
                server._answer(self, n, answer, body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self.openai_url = self.url + "/v1"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def count(self, path: str | None = None) -> int:
        """Requests received (to `path` only, when given)."""
        with self._lock:
            return sum(1 for a in self.asked if path is None or a.path == path)

    def _take(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Answer]:
        with self._lock:
            self.asked.append(Asked(path, body, headers, time.monotonic()))
            return len(self.asked), (self.script.pop(0) if self.script else ok())

    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)

    # answers ---------------------------------------------------------------------------

    def _answer(self, h: BaseHTTPRequestHandler, n: int, a: Answer, req: dict[str, Any]) -> None:
        path = h.path.split("?")[0]
        rid = f"req_{n}"
        headers = {"x-request-id": rid, "request-id": rid, **a.headers}
        if a.status != 200:
            # "{auth}" in a message echoes the credentials sent: a careless server
            auth = h.headers.get("Authorization") or h.headers.get("x-api-key") or ""
            a = replace(a, message=a.message.replace("{auth}", auth))
            return _send_json(h, a.status, headers, _error_body(path, a))
        model = a.model or f"{req.get('model', 'model')}-2024-07-18"
        if not req.get("stream"):
            build = {CHAT: _chat, RESPONSES: _response, MESSAGES: _message}[path]
            return _send_json(h, 200, headers, build(n, model, a))
        h.send_response(200)
        for k, v in {**headers, "Content-Type": "text/event-stream"}.items():
            h.send_header(k, v)
        h.send_header("Connection", "close")
        h.end_headers()
        events = {CHAT: _chat_events, RESPONSES: _response_events, MESSAGES: _message_events}
        for event, data in events[path](n, model, a, req):
            line = (f"event: {event}\n" if event else "") + f"data: {data}\n\n"
            h.wfile.write(line.encode())
            h.wfile.flush()
        h.close_connection = True


def _send_json(h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: Any) -> None:
    payload = json.dumps(body).encode()
    h.send_response(status)
    for k, v in headers.items():
        h.send_header(k, v)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(payload)))
    h.end_headers()
    h.wfile.write(payload)


def _error_body(path: str, a: Answer) -> dict[str, Any]:
    message = a.message or f"{a.error_type} ({a.status})"
    if path == MESSAGES:
        return {"type": "error", "error": {"type": a.error_type, "message": message}}
    return {"error": {"message": message, "type": a.error_type, "code": a.error_code}}


def _chat(n: int, model: str, a: Answer) -> dict[str, Any]:
    finish = a.finish or ("content_filter" if a.refusal == "filter" else "stop")
    message: dict[str, Any] = {"role": "assistant", "content": a.text}
    if a.refusal and a.refusal != "filter":
        message = {"role": "assistant", "content": None, "refusal": a.refusal}
    return {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": _openai_usage(a),
    }


def _openai_usage(a: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": a.input_tokens,
        "completion_tokens": a.output_tokens,
        "total_tokens": a.input_tokens + a.output_tokens,
        "prompt_tokens_details": {"cached_tokens": a.cached_tokens},
    }


def _chat_events(n: int, model: str, a: Answer, req: dict[str, Any]) -> list[tuple[str, str]]:
    head = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 1, "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[str, str]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return "", json.dumps({**head, "choices": [choice]})

    out = [chunk({"role": "assistant", "content": ""})]
    words = a.text.split(" ")
    out += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
    if a.mid_stream:
        error = {"error": {"message": a.message, "type": a.error_type, "code": a.error_type}}
        return [*out, ("", json.dumps(error))]
    out.append(chunk({}, a.finish or "stop"))
    if (req.get("stream_options") or {}).get("include_usage"):
        out.append(("", json.dumps({**head, "choices": [], "usage": _openai_usage(a)})))
    return [*out, ("", "[DONE]")]


def _response(n: int, model: str, a: Answer) -> dict[str, Any]:
    content: dict[str, Any] = {"type": "output_text", "text": a.text, "annotations": []}
    if a.refusal:
        content = {"type": "refusal", "refusal": a.refusal}
    return {
        "id": f"resp_{n}",
        "object": "response",
        "created_at": 1_700_000_000,
        "model": model,
        "status": "completed",
        "output": [
            {
                "type": "message",
                "id": f"msg_{n}",
                "status": "completed",
                "role": "assistant",
                "content": [content],
            }
        ],
        "usage": {
            "input_tokens": a.input_tokens,
            "output_tokens": a.output_tokens,
            "total_tokens": a.input_tokens + a.output_tokens,
            "input_tokens_details": {"cached_tokens": a.cached_tokens},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def _response_events(n: int, model: str, a: Answer, req: dict[str, Any]) -> list[tuple[str, str]]:
    final = _response(n, model, a)
    started = {**final, "status": "in_progress", "output": [], "usage": None}
    out = [("response.created", {"type": "response.created", "response": started})]
    for word in a.text.split(" "):
        delta = {"item_id": f"msg_{n}", "output_index": 0, "content_index": 0, "delta": word}
        out.append(("response.output_text.delta", {"type": "response.output_text.delta", **delta}))
    if a.mid_stream:
        failed = {**final, "status": "failed", "error": {"code": a.error_type, "message": "x"}}
        out.append(("response.failed", {"type": "response.failed", "response": failed}))
    else:
        out.append(("response.completed", {"type": "response.completed", "response": final}))
    return [(e, json.dumps({**d, "sequence_number": i})) for i, (e, d) in enumerate(out)]


def _message(n: int, model: str, a: Answer) -> dict[str, Any]:
    return {
        "id": f"msg_{n}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": a.refusal or a.text}],
        "stop_reason": "refusal" if a.refusal else (a.finish or "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": a.input_tokens - a.cached_tokens,
            "output_tokens": a.output_tokens,
            "cache_read_input_tokens": a.cached_tokens,
            "cache_creation_input_tokens": 0,
        },
    }


def _message_events(n: int, model: str, a: Answer, req: dict[str, Any]) -> list[tuple[str, str]]:
    whole = _message(n, model, a)
    start = {**whole, "content": [], "stop_reason": None, "usage": {**whole["usage"]}}
    start["usage"]["output_tokens"] = 1
    out: list[tuple[str, Any]] = [("message_start", {"type": "message_start", "message": start})]
    block = {"type": "text", "text": ""}
    out.append(
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
    )
    for i, word in enumerate(whole["content"][0]["text"].split(" ")):
        delta = {"type": "text_delta", "text": word if i == 0 else " " + word}
        out.append(
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        )
    if a.mid_stream:
        error = {"type": "error", "error": {"type": a.error_type, "message": a.message}}
        return [(e, json.dumps(d)) for e, d in [*out, ("error", error)]]
    out.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    delta = {"stop_reason": whole["stop_reason"], "stop_sequence": None}
    usage = {"output_tokens": a.output_tokens}
    out.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    out.append(("message_stop", {"type": "message_stop"}))
    return [(e, json.dumps(d)) for e, d in out]
