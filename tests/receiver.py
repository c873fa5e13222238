"""A real HTTP/1.1 receiver on 127.0.0.1 (random port) for webhook and egress tests.

It runs on the test's event loop (asyncio streams, keep-alive, optional TLS), records
every request it reads, and answers as `behaviour` says: a status, a delay, a body.
The bench imports it too (bench/webhooks.py), so both measure and test the same thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Received:
    """One request as the receiver read it; `at` is time.monotonic() when read."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    wall: float


@dataclass
class Behaviour:
    """How the receiver answers; tests change it while it runs."""

    status: int = 200
    delay: float = 0.0
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    record: bool = True
    """False: answer without recording (a receiver that is 'down' answers 503 unrecorded)."""


class Receiver:
    """`async with Receiver() as r:` then send to `r.url`; `r.requests` holds what came."""

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        respond: Callable[[Received], Behaviour | None] | None = None,
    ) -> None:
        self.behaviour = behaviour or Behaviour()
        self.respond = respond
        self.requests: list[Received] = []
        self.connections = 0
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=self._ssl, backlog=512
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            for task in list(self._handlers):
                with contextlib.suppress(BaseException):
                    await task
            await self._server.wait_closed()
            self._server = None

    async def wait_for(self, done: Callable[[list[Received]], bool], timeout: float = 10) -> None:
        """Wait until `done(self.requests)` holds, or fail after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not done(self.requests):
            left = end - loop.time()
            if left <= 0:
                raise AssertionError(f"receiver: condition not met, {len(self.requests)} requests")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.2))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)  # type: ignore[arg-type]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                received = Received(method, path, headers, body, time.monotonic(), time.time())
                answer = (self.respond(received) if self.respond else None) or self.behaviour
                if answer.record:
                    self.requests.append(received)
                    self._changed.set()
                if answer.delay:
                    await asyncio.sleep(answer.delay)
                extra = "".join(f"{k}: {v}\r\n" for k, v in answer.headers.items())
                writer.write(
                    f"HTTP/1.1 {answer.status} X\r\ncontent-length: {len(answer.body)}\r\n"
                    f"{extra}\r\n".encode("latin-1")
                    + answer.body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._handlers.discard(task)  # type: ignore[arg-type]
            writer.close()
            with contextlib.suppress(BaseException):
                await writer.wait_closed()
