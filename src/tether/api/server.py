"""Running the API on uvicorn: what `tether server` calls."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from tether.api.app import create_app
from tether.api.processes import bind, supervise
from tether.app import Tether
from tether.auth import auth_configured, create_token, dev_secret, require_auth
from tether.config import Settings

DEV_TOKEN_TTL = 7 * 86400.0


def dev_banner(settings: Settings) -> str | None:
    """In dev mode without configured auth: make sure the local secret exists and return
    a ready admin token for `settings.tenant` (None otherwise)."""
    if not settings.dev or auth_configured(settings):
        return None
    return create_token(dev_secret(), settings.tenant, ["admin"], subject="dev", ttl=DEV_TOKEN_TTL)


def build_server(
    app: Tether,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: Settings | None = None,
    workers: bool = True,
    *,
    worker_options: dict[str, Any] | None = None,
    log_level: str = "info",
) -> uvicorn.Server:
    """A uvicorn server for the API of `app` (not started)."""
    settings = settings or app.settings
    require_auth(settings)
    api = create_app(app, settings, workers=workers, worker_options=worker_options)
    config = uvicorn.Config(
        api,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        # The C parser: h11 (pure Python) cost 10-25% more CPU per request (ADR 81).
        http="httptools",
        proxy_headers=False,
        server_header=False,
    )
    return uvicorn.Server(config)


def serve(
    app: Tether,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: Settings | None = None,
    workers: bool = True,
    *,
    worker_options: dict[str, Any] | None = None,
    log_level: str = "info",
    processes: int = 1,
) -> None:
    """Serve the API until interrupted (blocking). `workers=False` is an API-only node.
    `processes > 1`: that many server processes share the port, each with its own
    store connection and embedded worker (`tether.api.processes`; POSIX only).

    Raises `ConfigError` when no authentication is configured and not in dev mode; in
    dev mode without a secret, a local one is created and a ready token printed.
    """
    settings = settings or app.settings
    token = dev_banner(settings)
    server = build_server(
        app,
        host,
        port,
        settings,
        workers,
        worker_options=worker_options,
        log_level=log_level,
    )
    if token is not None:
        print(
            "tether: DEV MODE, local secret in .tether/dev-secret. An admin token for tenant "
            f"{settings.tenant!r} (valid 7 days):\n\n  {token}\n\n"
            f'  curl -H "Authorization: Bearer $TOKEN" http://{host}:{port}/v1/tasks\n',
            file=sys.stderr,
            flush=True,
        )
    if processes <= 1:
        server.run()
        return
    sock = bind(host, port)
    try:
        code = supervise(processes, sock, lambda shared: server.run(sockets=[shared]))
    finally:
        sock.close()
    if code:
        sys.exit(code)
