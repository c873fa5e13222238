"""The rate-limit gauges of `/metrics` (ADR 90): how full each bucket in the database
is, its size and its rate, by what it counts, integration and tenant."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from tether.models.buckets import BucketState


class RateLimitGauges:
    """`tether_rate_limit_available` (units a bucket would grant now; below zero while
    in debt), `tether_rate_limit_burst` and `tether_rate_limit_rate` (per second)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["kind", "integration", "tenant"]
        self.available = Gauge(
            "tether_rate_limit_available",
            "Units a rate-limit bucket would grant now (negative: in debt); tenant '*' is "
            "shared by every tenant",
            labels,
            registry=registry,
        )
        self.burst = Gauge(
            "tether_rate_limit_burst",
            "Units a rate-limit bucket holds at most",
            labels,
            registry=registry,
        )
        self.rate = Gauge(
            "tether_rate_limit_rate",
            "Units a second a rate-limit bucket refills at",
            labels,
            registry=registry,
        )

    def show(self, states: list[BucketState], now: float) -> None:
        for gauge in (self.available, self.burst, self.rate):
            gauge.clear()
        for s in states:
            labels = (s.key.kind.value, s.key.name, s.key.tenant)
            self.available.labels(*labels).set(round(s.available(now), 3))
            self.burst.labels(*labels).set(s.burst)
            self.rate.labels(*labels).set(s.rate)
