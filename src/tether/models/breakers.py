"""Circuit breakers: per integration, their state shared in the database (ADR 91).

A breaker watches the steps that name its integration (`@app.step(integration="crm")`,
a model call's provider). It opens after `failures` transient failures in a row, or
when the transient failures reach `failure_rate` of the calls of the last `window`
seconds; while open, steps needing the integration wait (`circuit_open`) instead of
calling it. After `cool_down` it is half-open: `probes` steps at a time, fleet-wide,
try the integration, the others keep waiting; a probe that succeeds closes it, one
that fails opens it again. An operator opens and closes one by hand.

A breaker belongs to a scope: `FLEET` ("*", the default: an outside system that every
tenant shares) or one tenant (`per_tenant` policies, and a tenant's own manual holds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

from tether.models.rollouts import EVERY_TENANT

FLEET = EVERY_TENANT
"""The scope of a fleet-wide breaker: every tenant's steps count and wait on it."""


class BreakerState(StrEnum):
    """Where a breaker is."""

    CLOSED = "closed"
    """Steps call the integration; transient failures are counted."""
    OPEN = "open"
    """Steps needing the integration wait until the cool-down ends (or, opened by
    hand, until it is closed by hand)."""
    HALF_OPEN = "half_open"
    """The cool-down is over: a few probes try the integration, the others wait."""


@dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens, how long it stays open, and how it probes."""

    failures: int | None = 5
    """Transient failures in a row that open it (None: no such rule)."""
    failure_rate: float | None = None
    """Share of the calls of the last `window` seconds, 0 to 1, whose transient failure
    opens it, once at least `min_calls` were made (None: no such rule)."""
    window: float = 60.0
    """Seconds of calls the failure rate is taken over (a sliding estimate)."""
    min_calls: int = 20
    """Calls in the window below which the failure rate does not open it."""
    cool_down: float = 30.0
    """Seconds it stays open before probes are let through."""
    probes: int = 1
    """Probes at a time, fleet-wide, while half-open."""
    per_tenant: bool = False
    """One breaker per tenant (the integration is each tenant's own account) instead of
    one for the fleet (an outside system every tenant shares)."""

    def __post_init__(self) -> None:
        if self.failures is None and self.failure_rate is None:
            raise ValueError("a breaker needs `failures` or `failure_rate` (or both)")
        if self.failures is not None and (
            not isinstance(self.failures, int) or isinstance(self.failures, bool)
        ):
            raise ValueError(f"failures: expected a whole number, got {self.failures!r}")
        if self.failures is not None and self.failures < 1:
            raise ValueError(f"failures: at least 1, not {self.failures}")
        if self.failure_rate is not None and not 0.0 < self.failure_rate <= 1.0:
            raise ValueError(f"failure_rate: above 0 and at most 1, not {self.failure_rate}")
        for name in ("window", "cool_down"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: a positive number of seconds, not {value!r}")
        for name in ("min_calls", "probes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: a whole number of at least 1, not {value!r}")

    def scope(self, tenant: str) -> str:
        """The scope whose breaker counts a step of `tenant`."""
        return tenant if self.per_tenant else FLEET


@dataclass
class Breaker:
    """One breaker as the database holds it: a scope's breaker of an integration."""

    tenant: str
    """Its scope: `FLEET`, or the tenant it belongs to."""
    integration: str
    state: BreakerState = BreakerState.CLOSED
    manual: bool = False
    """Opened by hand: it stays open, without probes, until closed by hand."""
    failures: int = 0
    """Transient failures in a row while closed."""
    window_start: float | None = None
    """Start of the current window of calls (a multiple of the policy's `window`)."""
    window_calls: int = 0
    window_failures: int = 0
    prev_calls: int = 0
    """Calls of the window before the current one (weighted into the failure rate)."""
    prev_failures: int = 0
    opened_at: float | None = None
    open_until: float | None = None
    """When the cool-down ends (None while closed, and when opened by hand)."""
    opens: int = 0
    """How many times it opened (closed to open)."""
    reason: str | None = None
    """Why it is open, or was last: the rule that opened it, a failed probe, or the
    operator's reason. It never quotes an error: a fleet-wide breaker's failures are
    every tenant's."""
    updated_by: str | None = None
    """Who opened or closed it by hand (None: it moved by itself)."""
    updated_at: float = 0.0

    def rolled(self, now: float, window: float) -> Breaker:
        """A copy whose window is the one `now` falls in (the previous one's calls kept
        as `prev_*` when it is the window just before)."""
        start = math.floor(now / window) * window
        if self.window_start == start:
            return self
        copy = replace(self)
        if self.window_start is not None and self.window_start == start - window:
            copy.prev_calls, copy.prev_failures = self.window_calls, self.window_failures
        else:
            copy.prev_calls, copy.prev_failures = 0, 0
        copy.window_start, copy.window_calls, copy.window_failures = start, 0, 0
        return copy

    def rate(self, now: float, window: float) -> tuple[float, float]:
        """(calls, failures) of the last `window` seconds: the current window's, plus
        the previous one's weighted by how much of it the last `window` still covers."""
        r = self.rolled(now, window)
        assert r.window_start is not None
        weight = max(0.0, 1.0 - (now - r.window_start) / window)
        return (
            r.window_calls + r.prev_calls * weight,
            r.window_failures + r.prev_failures * weight,
        )


@dataclass
class BreakerView:
    """A configured breaker as it applies to one tenant's steps (or, `tenant` FLEET,
    the fleet-wide one alone)."""

    integration: str
    tenant: str
    policy: BreakerPolicy
    fleet: Breaker | None
    """The fleet-wide breaker (None: never opened nor failed)."""
    own: Breaker | None
    """The tenant's own breaker (a per-tenant policy's, or a manual hold); None for the
    fleet's view or when the tenant has none."""

    @property
    def state(self) -> BreakerState:
        """What a step of the tenant meets: open if either breaker is open, else
        half-open if either is, else closed."""
        states = {b.state for b in (self.fleet, self.own) if b is not None}
        for state in (BreakerState.OPEN, BreakerState.HALF_OPEN):
            if state in states:
                return state
        return BreakerState.CLOSED
