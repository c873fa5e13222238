"""The FastAPI application factory.

    api = create_app(tether_app)                 # API only
    api = create_app(tether_app, workers=True)   # API plus embedded workers

Routers for later features plug in through `OPTIONAL_ROUTERS`: a module listed there
that exists and exposes `router` (an `APIRouter`) is included, behind the same auth
dependencies (`tether.api.deps.require`).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry

from tether.api import contract, events, health, problems, tasks
from tether.api.limits import GuardMiddleware, Metrics
from tether.app import Tether
from tether.auth import TokenVerifier, dev_secret, require_auth
from tether.config import Settings
from tether.flow import SubmitLimiter

OPTIONAL_ROUTERS = (
    "tether.api.approvals",
    "tether.api.dlq",
    "tether.api.webhooks",
    "tether.api.hooks",
    "tether.api.schedules",
    "tether.api.rollouts",
    "tether.api.breakers",
    "tether.api.spend",
)
"""Modules other features add; each exposes `router`. Missing ones are skipped."""

DESCRIPTION = """\
Submit tasks to Tether workflows and follow them.

Every request but `/healthz`, `/readyz` and the signed inbound webhooks
(`POST /v1/hooks/{name}`, authenticated by their signature) needs a credential:
`Authorization: Bearer <JWT>` (claims `sub`, `tenant`, `roles`, `exp`) or `X-API-Key`;
`/metrics` also takes the deployment's scrape token (`metrics_token`).
A task of another tenant answers 404. Errors are `application/problem+json`.
"""


def _secret(settings: Settings) -> str | None:
    if settings.jwt_secret is not None and settings.jwt_secret.get_secret_value():
        return settings.jwt_secret.get_secret_value()
    if settings.dev and not settings.jwks_url:
        return dev_secret()
    return None


def create_app(
    tether: Tether,
    settings: Settings | None = None,
    *,
    workers: bool = False,
    worker_options: dict[str, Any] | None = None,
    close_on_shutdown: bool = True,
) -> FastAPI:
    """Build the HTTP API of `tether`.

    Raises `ConfigError` when no authentication is configured and `settings.dev` is off.
    With `workers`, an embedded worker (`tether.worker(**worker_options)`, with its
    webhook dispatcher and scheduler) runs for the server's lifetime; without, a webhook
    dispatcher and a scheduler alone (unless `settings.webhooks` / `settings.schedules`
    is off). The store opens at start-up and closes
    at shutdown.
    """
    settings = settings or tether.settings
    require_auth(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await tether.open()
        try:
            async with AsyncExitStack() as stack:
                if workers:
                    await stack.enter_async_context(tether.worker(**(worker_options or {})))
                else:  # an API-only node still delivers webhooks and fires schedules
                    if settings.webhooks:
                        await stack.enter_async_context(tether.dispatcher())
                    if settings.schedules:
                        await stack.enter_async_context(tether.scheduler())
                yield
        finally:
            if close_on_shutdown:
                await tether.close()

    api = FastAPI(
        title="Tether API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI looks for a configured OpenTelemetry provider on every request unless
        # told not to: ~10% of a submit's CPU for nothing when none is (ADR 80).
        telemetry=None
        if settings.api_telemetry
        else {"tracing": False, "metrics": False, "logs": False},
    )
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    api.state.tether = tether
    api.state.settings = settings
    api.state.verifier = TokenVerifier(_secret(settings), settings.jwks_url)
    api.state.limiter = SubmitLimiter(tether, settings.submit_rate, settings.submit_burst)
    api.state.registry = registry
    api.state.queue_metrics = health.QueueMetrics(registry)
    token = settings.metrics_token
    api.state.metrics_token = token.get_secret_value() if token is not None else None
    api.add_middleware(GuardMiddleware, max_body=settings.max_body_bytes, metrics=metrics)
    problems.install(api)
    api.include_router(health.router)
    api.include_router(tasks.router)
    api.include_router(events.router)
    for name in OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        api.include_router(module.router)

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            api.openapi_schema = contract.document(
                get_openapi(
                    title=api.title,
                    version=api.version,
                    description=api.description,
                    routes=api.routes,
                )
            )
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    return api
