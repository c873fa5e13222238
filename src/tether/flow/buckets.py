"""This process's way to the buckets the store keeps (ADR 90).

Every take goes to the store, which decides it atomically for the whole fleet, with
one exception: a bucket that refused is known to this process until it can allow, and
a take that could not be granted before then is refused here, without a round trip.
That is safe because other takes only move a bucket's "full again" time later (a
credit may move it earlier: then this process waits a little longer than it had to).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tether.clock import Clock
from tether.models.buckets import BucketKey
from tether.store.buckets import EPSILON, BucketStore, Take, TakeOutcome


class FlowHost(Protocol):
    """What flow control needs of the application: its store and its clock."""

    @property
    def store(self) -> BucketStore: ...

    @property
    def clock(self) -> Clock: ...


class Buckets:
    """Takes from the store's buckets, remembering refusals until they lapse."""

    def __init__(self, host: FlowHost) -> None:
        self.host = host
        self._full_at: dict[BucketKey, float] = {}
        """A lower bound of a refusing bucket's "full again" time (its `tat`)."""

    def known_refusal(self, takes: Sequence[Take], now: float) -> TakeOutcome | None:
        """A refusal this process can tell without asking (a bucket that refused
        before cannot hold enough yet), or None."""
        latest: TakeOutcome | None = None
        for t in takes:
            full_at = self._full_at.get(t.key)
            if full_at is None:
                continue
            allowed = full_at + (t.need - t.burst) / t.rate
            if allowed <= now + EPSILON:
                if full_at <= now:
                    del self._full_at[t.key]  # lapsed: nothing to remember
                continue
            if latest is None or allowed > (latest.retry_at or 0.0):
                latest = TakeOutcome(False, allowed, t.key)
        return latest

    async def take(self, takes: Sequence[Take], now: float) -> TakeOutcome:
        """Take from all of `takes` at `now`, all or none (the store decides, unless
        this process already knows a refusal)."""
        known = self.known_refusal(takes, now)
        if known is not None:
            return known
        outcome = await self.host.store.take_from_buckets(takes, now)
        if not outcome.granted and outcome.refused_by is not None:
            assert outcome.retry_at is not None
            refused = next(t for t in takes if t.key == outcome.refused_by)
            self._full_at[refused.key] = outcome.retry_at - (refused.need - refused.burst) / (
                refused.rate
            )
        return outcome

    async def adjust(self, take: Take, amount: float, now: float) -> None:
        """Debit `amount` more units from `take`'s bucket (credit, when negative)."""
        if amount < 0:
            self._full_at.pop(take.key, None)  # it may allow sooner than it said
        await self.host.store.adjust_bucket(take.key, amount, take.rate, take.burst, now)
