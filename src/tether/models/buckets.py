"""Rate-limit buckets kept in the database (ADR 90): what they are keyed by, and a
bucket's state as every process sees it.

A bucket is a token bucket in the GCRA form: instead of a token count and a refill
time it keeps one instant, `tat`, when it would be full again. It holds at most
`burst` units and refills at `rate` units a second; a take of n units is granted when
the bucket holds n (at most `burst`: a larger take waits for a full bucket and leaves
it in debt), and a debit of what a model call really used may leave it in debt too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

SHARED = "*"
"""The `tenant` of a bucket every tenant shares (a fleet-wide limit; as rollouts name
every tenant, ADR 84)."""


class BucketKind(StrEnum):
    """What a bucket counts."""

    REQUESTS = "requests"
    """Attempts of steps that call one integration (`@app.step(integration=...)`)."""
    TOKENS = "tokens"
    """Model tokens (input and output) of the calls to one model provider."""
    SUBMITS = "submits"
    """Tasks a tenant submits over the HTTP API (`submit_rate`)."""


@dataclass(frozen=True)
class BucketKey:
    """Which bucket: what it counts, for which integration, whose."""

    kind: BucketKind
    name: str
    """The integration or model provider; empty for submissions."""
    tenant: str
    """The tenant whose bucket it is, or `SHARED`."""


@dataclass
class BucketState:
    """A bucket as the database keeps it (`tether.services.rate_limits`, `/metrics`)."""

    key: BucketKey
    tat: float
    """When the bucket would be full again (epoch seconds); in the past: it is full."""
    rate: float
    """Units a second it refills at (as its latest take configured it)."""
    burst: float
    """Units it holds at most."""
    granted: bool
    """Whether its latest take was granted."""
    updated_at: float
    """When it was last taken from."""

    def available(self, now: float) -> float:
        """Units it would grant at `now`: up to `burst`; below zero while in debt."""
        return min(self.burst, self.burst - (self.tat - now) * self.rate)
