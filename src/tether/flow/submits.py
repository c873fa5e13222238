"""`SubmitLimiter`: the HTTP API's per-tenant submission limit, shared by every API
process on the database (ADR 90; it replaces ADR 23's bucket per process).

Each tenant has one bucket in the store (kind `submits`). A submit is the API's
hottest route, so a process does not ask the store for every request: it takes a
*lease* of a few tokens at once and spends them locally, for at most `lease_seconds`.
A lease starts at one token and doubles while the tenant uses its leases up before
they lapse (up to `lease_seconds` of the rate, and a quarter of the burst); a lease
that lapses unspent is credited back to the bucket and the next one is half as large.
So a quiet tenant costs one round trip per submit, as exact as the bucket itself, and
a busy one a round trip per lease; every token spent was taken from the shared bucket,
so the fleet never admits more than the bucket allows, give or take one lease per
process. A refusal is remembered until the bucket can allow: a tenant over its limit
is answered 429 without a round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from tether.flow.buckets import Buckets, FlowHost
from tether.models.buckets import BucketKey, BucketKind
from tether.store.buckets import Take

LEASE_SECONDS = 0.1
"""How long a lease of tokens may be spent from (and so the most seconds of the rate
one lease holds)."""
MAX_LEASES = 10_000
"""Tenants whose lease a process keeps before it forgets those that lapsed empty."""


@dataclass
class _Lease:
    tokens: float = 0.0
    expires: float = 0.0
    size: float = 1.0
    refill: asyncio.Future[None] | None = None


class SubmitLimiter:
    """Token buckets per tenant, `rate` submissions a second, at most `burst` at once,
    kept in the store and spent from local leases (`lease_seconds`, default
    `LEASE_SECONDS`; 0: every submit asks the store)."""

    def __init__(
        self, host: FlowHost, rate: float, burst: float, *, lease_seconds: float | None = None
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.lease_seconds = LEASE_SECONDS if lease_seconds is None else lease_seconds
        self.max_lease = max(1.0, min(self.burst / 4, rate * self.lease_seconds))
        """The most tokens one lease holds (1 when leases are off)."""
        self.buckets = Buckets(host)
        self.host = host
        self._leases: dict[str, _Lease] = {}
        self._credits: set[asyncio.Task[None]] = set()

    def _take(self, tenant: str, cost: float) -> Take:
        return Take(BucketKey(BucketKind.SUBMITS, "", tenant), cost, self.rate, self.burst)

    async def take(self, tenant: str, cost: float = 1.0) -> float:
        """Take `cost` tokens of `tenant`'s bucket; 0 when granted, else the seconds to
        wait before asking again. A batch costing more than the burst is granted once
        the bucket is full, and leaves it in debt, so the rate holds for batches too."""
        if self.rate <= 0:
            return 0.0
        if self.lease_seconds <= 0 or cost > self.max_lease:
            return await self._ask(self._take(tenant, cost))
        lease = self._leases.get(tenant)
        if lease is None:
            if len(self._leases) >= MAX_LEASES:
                self._forget_lapsed(self.host.clock.now())
            lease = self._leases[tenant] = _Lease()
        while True:
            now = self.host.clock.now()
            if now >= lease.expires and lease.tokens > 0:
                self._credit(tenant, lease.tokens)  # lapsed unspent: give it back
                lease.tokens = 0.0
                lease.size = max(1.0, lease.size / 2)
            if lease.tokens >= cost:
                lease.tokens -= cost
                return 0.0
            if lease.refill is None:
                return await self._refill(tenant, lease, cost, now)
            with contextlib.suppress(Exception):  # its outcome is the refiller's to say
                await asyncio.shield(lease.refill)

    def _forget_lapsed(self, now: float) -> None:
        """Drop the leases that lapsed with nothing left (their tenants went quiet)."""
        for tenant, lease in list(self._leases.items()):
            if lease.refill is None and lease.tokens <= 0 and lease.expires <= now:
                del self._leases[tenant]

    async def _refill(self, tenant: str, lease: _Lease, cost: float, now: float) -> float:
        """Take a new lease for `tenant`, of which `cost` is spent at once."""
        lease.refill = asyncio.get_running_loop().create_future()
        try:
            if now < lease.expires:  # used up before it lapsed: the tenant is busy
                lease.size = min(self.max_lease, lease.size * 2)
            amount = max(cost, lease.size)
            outcome = await self.buckets.take([self._take(tenant, amount)], now)
            if not outcome.granted and amount > cost:  # too big for what is left
                amount = cost
                outcome = await self.buckets.take([self._take(tenant, amount)], now)
            if not outcome.granted:
                assert outcome.retry_at is not None
                return max(outcome.retry_at - now, 0.0)
            lease.tokens += amount - cost
            lease.expires = now + self.lease_seconds
            return 0.0
        finally:
            lease.refill.set_result(None)
            lease.refill = None

    async def _ask(self, take: Take) -> float:
        now = self.host.clock.now()
        outcome = await self.buckets.take([take], now)
        if outcome.granted:
            return 0.0
        assert outcome.retry_at is not None
        return max(outcome.retry_at - now, 0.0)

    def _credit(self, tenant: str, tokens: float) -> None:
        """Give `tokens` back to `tenant`'s bucket, in the background (best effort:
        failing, they are only lost until the bucket refills)."""
        take = self._take(tenant, tokens)

        async def credit() -> None:
            with contextlib.suppress(Exception):
                await self.buckets.adjust(take, -tokens, self.host.clock.now())

        task = asyncio.get_running_loop().create_task(credit())
        self._credits.add(task)
        task.add_done_callback(self._credits.discard)
