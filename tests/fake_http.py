"""A real local HTTP server that answers from a script: the "outside API" of the tests
that drive real HTTP clients (httpx, requests, the OpenAI and Anthropic SDKs).

    with ScriptedServer([Reply(429, {"Retry-After": "120"}), Reply(200)]) as server:
        httpx.get(server.url + "/anything")

Each request takes the next reply; the last one repeats. Requests are recorded with
their arrival time (monotonic), so a test can measure the gap between two attempts.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status, headers and a JSON body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    at: float


RATE_LIMITED = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
"""An error body both SDKs parse (Anthropic's shape; OpenAI reads `error.message`)."""


class ScriptedServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 and a free port; a context manager."""

    def __init__(self, replies: list[Reply]) -> None:
        if not replies:
            raise ValueError("a script needs at least one reply")
        self._replies = list(replies)
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                reply = server._next(self.command, self.path)
                payload = json.dumps(reply.body if reply.body is not None else {}).encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
                return

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def _next(self, method: str, path: str) -> Reply:
        with self._lock:
            self.seen.append(Seen(method, path, time.monotonic()))
            return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)
