"""A real uvicorn server on 127.0.0.1 (random port), run in a thread of its own with
its own event loop, around a Tether app with the test workflows."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn

from api.workflows import build_app
from tether import Tether
from tether.api import create_app
from tether.auth import create_token
from tether.config import Settings, load_settings

SECRET = "test-secret-0123456789abcdef0123456789"


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "jwt_secret": SECRET,
        "submit_rate": 10000,
        "submit_burst": 10000,
        "poll_interval": 0.2,
    }
    values.update(overrides)
    return load_settings(values)


def token(tenant: str = "t1", roles: tuple[str, ...] = ("admin",), ttl: float = 600) -> str:
    return create_token(SECRET, tenant, list(roles), subject=f"{tenant}-user", ttl=ttl)


def auth(tenant: str = "t1", roles: tuple[str, ...] = ("admin",)) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(tenant, roles)}"}


class LiveServer:
    """Start with `start()`, stop with `stop()`; `url` is the base URL."""

    def __init__(
        self,
        settings: Settings,
        *,
        workers: bool = True,
        worker_options: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.app: Tether = build_app(settings.database_url, settings)
        self.workers = workers
        self.worker_options = {"poll_interval": 0.2, "concurrency": 50, **(worker_options or {})}
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> LiveServer:
        # IPPROTO_TCP named, as uvicorn does: asyncio sets TCP_NODELAY on accepted
        # connections only then, and without it every response on a kept-alive
        # connection waited ~40 ms for the client's delayed ACK (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        api = create_app(
            self.app,
            self.settings,
            workers=self.workers,
            worker_options=self.worker_options,
        )
        config = uvicorn.Config(api, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)

        def run() -> None:
            try:
                asyncio.run(self._server.serve(sockets=[sock]))  # type: ignore[union-attr]
            except BaseException as exc:  # reported by start()
                self._error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name="uvicorn-test", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"server failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "server thread did not stop"

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
