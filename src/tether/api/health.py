"""Health and metrics: `/healthz` (process up), `/readyz` (database reachable),
`/metrics` (Prometheus text). None needs a credential: they carry no task data."""

from __future__ import annotations

import contextlib
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from tether.api import problem_types
from tether.api.deps import tether_app
from tether.api.problems import problem, responses
from tether.api.schemas import Health
from tether.app import Tether
from tether.services import health

router = APIRouter(tags=["health"])

READY_TIMEOUT = 5.0


class QueueMetrics:
    """Queue gauges, refreshed from the store at most every `MIN_REFRESH` seconds (the
    endpoint is unauthenticated: scrapes must not become a way to load the database)."""

    MIN_REFRESH = 5.0

    def __init__(self, registry: CollectorRegistry) -> None:
        self._refreshed_at = -self.MIN_REFRESH
        self.depth = Gauge(
            "tether_tasks", "Tasks by queue and status", ["queue", "status"], registry=registry
        )
        self.oldest = Gauge(
            "tether_queue_oldest_seconds",
            "Age of the oldest runnable queued task, per queue",
            ["queue"],
            registry=registry,
        )

    async def refresh(self, app: Tether) -> None:
        if time.monotonic() - self._refreshed_at < self.MIN_REFRESH:
            return
        self._refreshed_at = time.monotonic()
        queues = await health.queues(app)
        self.depth.clear()
        for (queue, status), n in queues.counts.items():
            self.depth.labels(queue, status).set(n)
        self.oldest.clear()
        for queue in {q for q, _ in queues.counts} | set(queues.oldest):
            self.oldest.labels(queue).set(queues.oldest.get(queue, 0.0))


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="Readiness",
    responses=responses(503),
)
async def readyz(app: Annotated[Tether, Depends(tether_app)]) -> Any:
    """The database answers."""
    if not await health.database_ready(app, READY_TIMEOUT):
        return problem(problem_types.UNAVAILABLE, "the database is not reachable")
    return Health(status="ok")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request, app: Annotated[Tether, Depends(tether_app)]) -> Response:
    """Queue depth per queue and status, oldest queued age, HTTP request counters."""
    queues: QueueMetrics = request.app.state.queue_metrics
    registry: CollectorRegistry = request.app.state.registry
    with contextlib.suppress(Exception):  # still serve HTTP metrics when the DB is down
        await queues.refresh(app)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


__all__ = ["QueueMetrics", "router"]
