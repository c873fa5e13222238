"""Health and metrics: `/healthz` (process up) and `/readyz` (database reachable), open
to all as they carry no data; `/metrics` (Prometheus text), which does (ADR 66): with
the deployment's scrape token (`metrics_token`) every tenant's queue figures, every
rate-limit bucket and the HTTP request metrics, with a credential holding
`metrics:read` its own tenant's queue figures and buckets only (the request metrics are
the whole process's and the shared buckets count every tenant's calls, so they are not
shown)."""

from __future__ import annotations

import contextlib
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from tether.api import problem_types
from tether.api.deps import metrics_reader, tether_app
from tether.api.problems import problem, responses, retry_after
from tether.api.rate_limit_metrics import RateLimitGauges
from tether.api.schemas import Health
from tether.app import Tether
from tether.auth import Principal
from tether.models.rollouts import RolloutView
from tether.services import health, rate_limits, rollouts

router = APIRouter(tags=["health"])

READY_TIMEOUT = 5.0


class QueueGauges:
    """The queue gauges (`tether_tasks`, `tether_queue_oldest_seconds`) on a registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.depth = Gauge(
            "tether_tasks", "Tasks by queue and status", ["queue", "status"], registry=registry
        )
        self.oldest = Gauge(
            "tether_queue_oldest_seconds",
            "Age of the oldest runnable queued task, per queue",
            ["queue"],
            registry=registry,
        )

    def show(self, queues: health.QueueHealth) -> None:
        self.depth.clear()
        for (queue, status), n in queues.counts.items():
            self.depth.labels(queue, status).set(n)
        self.oldest.clear()
        for queue in {q for q, _ in queues.counts} | set(queues.oldest):
            self.oldest.labels(queue).set(queues.oldest.get(queue, 0.0))


class RolloutGauges:
    """A running canary beside its stable version: `tether_rollout_tasks` (tasks created
    since the canary began, by version, role and status) and
    `tether_rollout_failure_ratio` (failed over ended, per version; ADR 84)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["scope", "workflow", "version", "role"]
        self.tasks = Gauge(
            "tether_rollout_tasks",
            "Tasks of a workflow with a canary, created since it began, by version and status",
            [*labels, "status"],
            registry=registry,
        )
        self.failures = Gauge(
            "tether_rollout_failure_ratio",
            "Failed over ended tasks of a workflow with a canary, per version, since it began",
            labels,
            registry=registry,
        )

    def show(self, views: list[RolloutView], tenant: str | None) -> None:
        self.tasks.clear()
        self.failures.clear()
        for view in views:
            r = view.rollout
            assert r is not None
            scope = r.tenant if tenant is None else ("all" if r.tenant == "*" else "tenant")
            for f in view.figures:
                role = "canary" if f.version == r.canary else "stable"
                labels = (scope, view.workflow, str(f.version), role)
                for status, n in f.counts.items():
                    self.tasks.labels(*labels, status).set(n)
                if f.failure_rate is not None:
                    self.failures.labels(*labels).set(f.failure_rate)


class QueueMetrics(QueueGauges):
    """The deployment's queue gauges, and the queued tasks no live worker claims (by
    workflow version: an operators' figure across tenants), refreshed from the store at
    most every `MIN_REFRESH` seconds (scrapes must not become a way to load the
    database)."""

    MIN_REFRESH = 5.0

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.rollouts = RolloutGauges(registry)
        self.rate_limits = RateLimitGauges(registry)
        self.unserved = Gauge(
            "tether_tasks_unserved",
            "Runnable queued tasks whose (workflow, version) no live worker of their queue "
            "claims: they wait until one starts",
            ["queue", "workflow", "version"],
            registry=registry,
        )
        self._refreshed_at = -self.MIN_REFRESH

    async def refresh(self, app: Tether) -> None:
        if time.monotonic() - self._refreshed_at < self.MIN_REFRESH:
            return
        self._refreshed_at = time.monotonic()
        self.show(await health.queues(app))
        self.unserved.clear()
        for v in (await health.unserved(app)).waiting:
            self.unserved.labels(v.queue, v.workflow, str(v.version)).set(v.tasks)
        self.rollouts.show(await rollouts.canaries(app, None), None)
        self.rate_limits.show(await rate_limits.buckets(app, None), app.clock.now())


async def tenant_metrics(app: Tether, tenant: str) -> bytes:
    """One tenant's queue gauges and rate-limit buckets, read now, on a registry of
    their own."""
    registry = CollectorRegistry()
    QueueGauges(registry).show(await health.queues(app, tenant))
    RolloutGauges(registry).show(await rollouts.canaries(app, tenant), tenant)
    RateLimitGauges(registry).show(await rate_limits.buckets(app, tenant), app.clock.now())
    return generate_latest(registry)


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
    """The database answers; else 503, the detail saying why (without naming a host)."""
    why = await health.database_unready(app, READY_TIMEOUT)
    if why is not None:
        return problem(problem_types.UNAVAILABLE, why, headers=retry_after(1))
    return Health(status="ok")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **responses(401, 403),
    },
)
async def metrics(
    request: Request,
    app: Annotated[Tether, Depends(tether_app)],
    who: Annotated[Principal | None, Depends(metrics_reader)],
) -> Response:
    """Queue depth per queue and status, the oldest queued age, and each running canary
    beside its stable version: the caller's tenant's with a `metrics:read` credential;
    every tenant's, the queued tasks no live worker claims (by workflow version) and
    the HTTP request counters, with the deployment's scrape token (`metrics_token`)."""
    if who is not None:
        return Response(await tenant_metrics(app, who.tenant), media_type=CONTENT_TYPE_LATEST)
    queues: QueueMetrics = request.app.state.queue_metrics
    registry: CollectorRegistry = request.app.state.registry
    with contextlib.suppress(Exception):  # still serve HTTP metrics when the DB is down
        await queues.refresh(app)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


__all__ = ["QueueGauges", "QueueMetrics", "RolloutGauges", "router", "tenant_metrics"]
