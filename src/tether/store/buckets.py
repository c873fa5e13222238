"""The rate-limit part of the store interface: token buckets every worker and server
share (ADR 90).

A take is atomic across the buckets it names: all are granted, or none is changed. It
says when it would be granted instead of waiting, so the caller decides how to wait
(a step is suspended, an HTTP submit answered 429 with `Retry-After`).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from tether.models.buckets import BucketKey, BucketState

EPSILON = 1e-6
"""Seconds of float rounding a take is allowed (a bucket exactly full enough grants;
epoch seconds in a double are exact to about 0.2 µs)."""


@dataclass(frozen=True)
class Take:
    """Take `cost` units from the bucket `key`, which refills at `rate` units a second
    and holds at most `burst`."""

    key: BucketKey
    cost: float
    rate: float
    burst: float

    @property
    def need(self) -> float:
        """What must be in the bucket for the take to be granted: `cost`, but at most a
        full bucket (a larger take is granted when it is full, and leaves it in debt)."""
        return min(self.cost, self.burst)


@dataclass(frozen=True)
class TakeOutcome:
    """What a take did: granted, or refused by `refused_by` until `retry_at`."""

    granted: bool
    retry_at: float | None = None
    """When the refusing bucket will hold what the take needs (epoch seconds), if
    nothing else takes from it meanwhile."""
    refused_by: BucketKey | None = None


class BucketStore(abc.ABC):
    """The rate-limit buckets' operations (a part of `Store`)."""

    @abc.abstractmethod
    async def take_from_buckets(self, takes: Sequence[Take], now: float) -> TakeOutcome:
        """Take from every bucket of `takes` at `now`, all or none; a bucket not yet
        stored starts full."""

    @abc.abstractmethod
    async def adjust_bucket(
        self, key: BucketKey, amount: float, rate: float, burst: float, now: float
    ) -> None:
        """Debit `amount` units (a model call used more than was taken for it: the
        bucket may go into debt), or credit them back when negative (it used less; a
        bucket is never fuller than full)."""

    @abc.abstractmethod
    async def list_buckets(self, tenant: str | None) -> list[BucketState]:
        """The buckets of `tenant` (None: every bucket, shared ones included)."""
