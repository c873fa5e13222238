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
from tether.models.breakers import FLEET, Breaker, BreakerState
from tether.models.rollouts import RolloutView
from tether.models.step_limits import StepLimitUsage
from tether.services import breakers, health, rate_limits, rollouts

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


class FlowGauges:
    """Circuit breakers and step limits (ADR 91): `tether_breaker_state` (1 for the state
    each breaker is in, by scope and integration), `tether_breaker_opens` and
    `tether_breaker_failures`; `tether_step_limit_max`, `tether_step_limit_running` and
    `tether_step_limit_waiting` per integration."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["scope", "integration"]
        self.state = Gauge(
            "tether_breaker_state",
            "1 for the state a circuit breaker is in (closed, open, half_open)",
            [*labels, "state"],
            registry=registry,
        )
        self.opens = Gauge(
            "tether_breaker_opens",
            "Times a circuit breaker opened",
            labels,
            registry=registry,
        )
        self.failures = Gauge(
            "tether_breaker_failures",
            "Transient failures in a row a closed circuit breaker counted",
            labels,
            registry=registry,
        )
        self.limit = Gauge(
            "tether_step_limit_max",
            "Steps of an integration that may run at once, fleet-wide",
            ["integration"],
            registry=registry,
        )
        self.running = Gauge(
            "tether_step_limit_running",
            "Steps of a limited integration running (holding a slot) now",
            ["integration"],
            registry=registry,
        )
        self.waiting = Gauge(
            "tether_step_limit_waiting",
            "Steps of a limited integration waiting for a slot",
            ["integration"],
            registry=registry,
        )

    def show(self, rows: list[tuple[str, Breaker]], limits: list[StepLimitUsage]) -> None:
        """`rows`: each breaker with the scope label it is shown under."""
        for gauge in (self.state, self.opens, self.failures, self.limit):
            gauge.clear()
        self.running.clear()
        self.waiting.clear()
        for scope, b in rows:
            for state in BreakerState:
                self.state.labels(scope, b.integration, str(state)).set(
                    1 if b.state == state else 0
                )
            self.opens.labels(scope, b.integration).set(b.opens)
            self.failures.labels(scope, b.integration).set(b.failures)
        for u in limits:
            self.limit.labels(u.integration).set(u.max_running)
            self.running.labels(u.integration).set(u.running)
            self.waiting.labels(u.integration).set(u.waiting)


async def _tenant_flow(app: Tether, tenant: str) -> list[tuple[str, Breaker]]:
    """The breakers a tenant's steps meet, labelled `all` (the fleet's) or `tenant`."""
    rows: list[tuple[str, Breaker]] = []
    for view in await breakers.views(app, tenant):
        rows.append(("all", view.fleet or Breaker(FLEET, view.integration)))
        if view.own is not None:
            rows.append(("tenant", view.own))
    return rows


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
        self.flow = FlowGauges(registry)
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
        self.flow.show(
            [(b.tenant, b) for b in await breakers.every_breaker(app)],
            await health.step_limits(app),
        )


async def tenant_metrics(app: Tether, tenant: str) -> bytes:
    """One tenant's queue gauges and rate-limit buckets, read now, on a registry of
    their own."""
    registry = CollectorRegistry()
    QueueGauges(registry).show(await health.queues(app, tenant))
    RolloutGauges(registry).show(await rollouts.canaries(app, tenant), tenant)
    RateLimitGauges(registry).show(await rate_limits.buckets(app, tenant), app.clock.now())
    FlowGauges(registry).show(
        await _tenant_flow(app, tenant), await health.step_limits(app, tenant)
    )
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
    """Queue depth per queue and status, the oldest queued age, each running canary
    beside its stable version, the circuit breakers' states and the step limits' use:
    the caller's tenant's with a `metrics:read` credential;
    every tenant's, the queued tasks no live worker claims (by workflow version) and
    the HTTP request counters, with the deployment's scrape token (`metrics_token`)."""
    if who is not None:
        return Response(await tenant_metrics(app, who.tenant), media_type=CONTENT_TYPE_LATEST)
    queues: QueueMetrics = request.app.state.queue_metrics
    registry: CollectorRegistry = request.app.state.registry
    with contextlib.suppress(Exception):  # still serve HTTP metrics when the DB is down
        await queues.refresh(app)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


__all__ = [
    "FlowGauges",
    "QueueGauges",
    "QueueMetrics",
    "RolloutGauges",
    "router",
    "tenant_metrics",
]
