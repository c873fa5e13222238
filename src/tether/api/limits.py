"""Request limits: the body cap, the media type check and the input rules (an ASGI
middleware), and request metrics. (Per-tenant submission rate limits are fleet-wide
buckets in the database: `tether.flow.SubmitLimiter`, ADR 90.)

The middleware buffers request bodies up to the cap before the application sees them:
an oversized body is refused with 413 without being read further, and no route has to
think about it. Only `/v1/` paths are held to JSON, and to the rules of what Tether
stores (`tether.api.inputs`: 422 naming the field); other mounts (the console) may
post forms.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether import storable
from tether.api import inputs, problem_types
from tether.api.problem_types import ProblemType
from tether.api.problems import PROBLEM_TYPE, problem_body, retry_after

_BODY_METHODS = {"POST", "PUT", "PATCH"}
log = logging.getLogger("tether.api")


def retry_after_header(seconds: float) -> dict[str, str]:
    """The `Retry-After` header of a refusal that asks to wait `seconds`."""
    return retry_after(seconds)


class Metrics:
    """HTTP request metrics, on a registry of the API's own."""

    def __init__(self, registry: Any) -> None:
        self.requests = Counter(
            "tether_http_requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "tether_http_request_seconds",
            "HTTP request latency by method and route",
            ["method", "route"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _body_headers(raw: list[tuple[bytes, bytes]]) -> tuple[str | None, str]:
    """Content-Length (None when absent) and Content-Type ('' when absent) of a request,
    read off the raw ASGI headers (no dict of them all built per request)."""
    length: str | None = None
    content_type = ""
    for key, value in raw:
        name = key.lower()
        if name == b"content-length":
            length = value.decode("latin-1")
        elif name == b"content-type":
            content_type = value.decode("latin-1")
    return length, content_type


class GuardMiddleware:
    """Body cap (413), JSON-only bodies under /v1 (415), the input rules under /v1
    (422), request metrics."""

    def __init__(self, app: ASGIApp, max_body: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_seen = [500]
        responded = [False]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen[0] = message["status"]
                responded[0] = True
            await send(message)

        try:
            await self._guarded(scope, receive, send_wrapper)
        except Exception as exc:
            # Answered here rather than by Starlette's outermost handler, which re-raises
            # and makes the server drop the (keep-alive) connection.
            log.error(
                "unhandled error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc
            )
            if responded[0]:
                raise
            await self._refuse(scope, send_wrapper, problem_types.INTERNAL_ERROR, None)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, path, str(status_seen[0])).inc()
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - started)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        api = path.startswith("/v1/")
        has_body = scope.get("method") in _BODY_METHODS
        if api:
            errors = inputs.request_errors(scope)
            if errors:  # a body left unread closes the connection
                await self._refuse_fields(scope, send, errors, close=has_body)
                return
        if not has_body:
            await self.app(scope, receive, send)
            return
        declared, content_type = _body_headers(scope["headers"])
        if declared is not None:
            try:
                if int(declared) > self.max_body:
                    await self._refuse(
                        scope, send, problem_types.BODY_TOO_LARGE, "the request body is too large"
                    )
                    return
            except ValueError:
                await self._refuse(
                    scope, send, problem_types.MALFORMED_REQUEST, "invalid Content-Length"
                )
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._refuse(
                    scope, send, problem_types.BODY_TOO_LARGE, "the request body is too large"
                )
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and api:
            if not _is_json(content_type):
                await self._refuse(
                    scope,
                    send,
                    problem_types.UNSUPPORTED_MEDIA_TYPE,
                    "send the request body as application/json",
                )
                return
            errors = inputs.body_errors(body)
            if errors:
                await self._refuse_fields(scope, send, errors, close=False)
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse_fields(
        self, scope: Scope, send: Send, errors: list[inputs.FieldError], *, close: bool
    ) -> None:
        await self._refuse(
            scope,
            send,
            problem_types.INVALID_REQUEST,
            "the request holds a value Tether does not accept",
            errors=errors,
            close=close,
        )

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        kind: ProblemType,
        detail: str | None,
        *,
        errors: list[inputs.FieldError] | None = None,
        close: bool = True,
    ) -> None:
        body = orjson.dumps(problem_body(kind, detail, _instance(scope), errors))
        headers = [
            (b"content-type", PROBLEM_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": kind.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _instance(scope: Scope) -> str | None:
    """The problem's `instance`: the request's path, fit to encode."""
    path: str | None = scope.get("path")
    return None if path is None else storable.printable(path)
