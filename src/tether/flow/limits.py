"""Rate limits by integration (ADR 90): what is configured, and which buckets a step
of a tenant takes from.

A limit names an integration (`@app.step(integration=...)`, a model call's provider)
and how many requests, and for model providers tokens, it admits a minute. It is
shared by every tenant, or each tenant gets a bucket of its own (`per_tenant`), or one
tenant has its own (`tenant`), which replaces the per-tenant limit for that tenant. A
step of tenant T calling integration I takes from I's shared bucket and from T's own
bucket of I, whichever are configured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tether.errors import ConfigError
from tether.models.buckets import SHARED, BucketKey, BucketKind
from tether.store.buckets import Take

KEYS = frozenset({"requests_per_minute", "tokens_per_minute", "burst_seconds", "tokens_per_call"})
"""What a limit's table may say (besides `per_tenant` and `tenants`)."""


@dataclass(frozen=True)
class RateLimit:
    """How much one integration admits, for one scope (`app.rate_limit`)."""

    integration: str
    requests_per_minute: float | None = None
    """Step attempts a minute (each attempt of a step naming the integration is one)."""
    tokens_per_minute: float | None = None
    """Model tokens (input and output) a minute: what calls report is debited."""
    burst_seconds: float = 1.0
    """A bucket holds this many seconds of its rate (at least one request): how much
    may go at once after a quiet spell."""
    tokens_per_call: float | None = None
    """What a model call is assumed to use before it reports (None: learnt from the
    calls so far, nothing at first)."""
    tenant: str | None = None
    """Only this tenant's steps, in a bucket of its own (replaces `per_tenant`)."""
    per_tenant: bool = False
    """Each tenant gets a bucket of its own at this rate (else one bucket is shared)."""

    def __post_init__(self) -> None:
        if not isinstance(self.integration, str) or not self.integration:
            raise ValueError("a rate limit names its integration (a non-empty string)")
        if self.tenant is not None and (not isinstance(self.tenant, str) or not self.tenant):
            raise ValueError("tenant must be a non-empty string")
        if self.tenant is not None and self.per_tenant:
            raise ValueError("give tenant= (one tenant's limit) or per_tenant=True, not both")
        if self.tenant == SHARED:
            raise ValueError(f"{SHARED!r} names the shared bucket, not a tenant")
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            raise ValueError(
                f"rate limit of {self.integration!r}: give requests_per_minute, "
                "tokens_per_minute or both"
            )
        for name in ("requests_per_minute", "tokens_per_minute", "burst_seconds"):
            value = getattr(self, name)
            if value is not None and not (_finite(value) and value > 0):
                raise ValueError(f"{name} must be a number above 0, not {value!r}")
        if self.tokens_per_call is not None:
            if not (_finite(self.tokens_per_call) and self.tokens_per_call >= 0):
                raise ValueError(f"tokens_per_call must be 0 or more, not {self.tokens_per_call!r}")
            if self.tokens_per_minute is None:
                raise ValueError("tokens_per_call is the estimate of a tokens_per_minute limit")

    @property
    def scope(self) -> str:
        """`shared`, `per tenant` or `tenant NAME`: what the limit is counted over."""
        if self.tenant is not None:
            return f"tenant {self.tenant}"
        return "per tenant" if self.per_tenant else "shared"

    def bucket_tenant(self, tenant: str) -> str:
        """Whose bucket a step of `tenant` takes from under this limit."""
        return tenant if self.tenant is not None or self.per_tenant else SHARED

    def take(self, kind: BucketKind, tenant: str, cost: float) -> Take | None:
        """The take of `cost` units of `kind` for a step of `tenant`, or None when this
        limit does not count `kind`."""
        per_minute = (
            self.requests_per_minute if kind == BucketKind.REQUESTS else self.tokens_per_minute
        )
        if per_minute is None:
            return None
        rate = per_minute / 60.0
        burst = max(1.0, rate * self.burst_seconds)
        key = BucketKey(kind, self.integration, self.bucket_tenant(tenant))
        return Take(key, cost, rate, burst)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class RateLimits:
    """The rate limits of an app, by integration and scope (`app.rate_limits`)."""

    def __init__(self) -> None:
        self._shared: dict[str, RateLimit] = {}
        self._each: dict[str, RateLimit] = {}
        self._tenants: dict[tuple[str, str], RateLimit] = {}

    def set(self, limit: RateLimit) -> None:
        """Use `limit`, replacing the one of its integration and scope."""
        if limit.tenant is not None:
            self._tenants[(limit.integration, limit.tenant)] = limit
        elif limit.per_tenant:
            self._each[limit.integration] = limit
        else:
            self._shared[limit.integration] = limit

    def remove(
        self, integration: str, *, tenant: str | None = None, per_tenant: bool = False
    ) -> bool:
        """Drop the limit of `integration` in that scope; False when there was none."""
        if tenant is not None:
            return self._tenants.pop((integration, tenant), None) is not None
        book = self._each if per_tenant else self._shared
        return book.pop(integration, None) is not None

    def all(self) -> list[RateLimit]:
        """Every limit: shared ones, per-tenant ones, then tenants' own."""
        return [*self._shared.values(), *self._each.values(), *self._tenants.values()]

    def __bool__(self) -> bool:
        return bool(self._shared or self._each or self._tenants)

    def applying(self, integration: str, tenant: str) -> list[RateLimit]:
        """The limits a step of `tenant` calling `integration` is held to: the shared
        one, and the tenant's own (else the per-tenant one)."""
        found = []
        shared = self._shared.get(integration)
        if shared is not None:
            found.append(shared)
        own = self._tenants.get((integration, tenant)) or self._each.get(integration)
        if own is not None:
            found.append(own)
        return found

    @classmethod
    def from_config(cls, table: Mapping[str, Any] | None) -> RateLimits:
        """Limits from the `rate_limits` setting (`[tether.rate_limits]`):

            [tether.rate_limits.openai]                 # one bucket every tenant shares
            requests_per_minute = 500
            tokens_per_minute = 200000
            [tether.rate_limits.openai.per_tenant]      # and each tenant its own
            requests_per_minute = 60
            [tether.rate_limits.openai.tenants.acme]    # acme's own, instead
            requests_per_minute = 200

        Raises `ConfigError` naming the table at fault."""
        limits = cls()
        for integration, entry in (table or {}).items():
            where = f"rate_limits.{integration}"
            entry = _table(entry, where)
            unknown = set(entry) - KEYS - {"per_tenant", "tenants"}
            if unknown:
                raise ConfigError(
                    f"{where}: unknown keys {sorted(unknown)} (expected {sorted(KEYS)}, "
                    "per_tenant, tenants)"
                )
            own = {k: v for k, v in entry.items() if k in KEYS}
            if own:
                limits.set(_limit(integration, own, where))
            if "per_tenant" in entry:
                sub = _table(entry["per_tenant"], f"{where}.per_tenant")
                limits.set(_limit(integration, sub, f"{where}.per_tenant", per_tenant=True))
            for tenant, sub in _table(entry.get("tenants", {}), f"{where}.tenants").items():
                at = f"{where}.tenants.{tenant}"
                limits.set(_limit(integration, _table(sub, at), at, tenant=tenant))
        return limits


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table")
    return value


def _limit(integration: str, entry: Mapping[str, Any], where: str, **scope: Any) -> RateLimit:
    unknown = set(entry) - KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (expected {sorted(KEYS)})")
    try:
        return RateLimit(integration, **entry, **scope)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
