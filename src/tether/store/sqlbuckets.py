"""`SQLBuckets`: the rate-limit bucket operations of the SQL stores (`BucketStore`),
mapped onto the shared logic in `tether.store.sql.buckets`."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from tether.models.buckets import BucketKey, BucketState
from tether.store.buckets import BucketStore, Take, TakeOutcome
from tether.store.sql import Conn, Dialect
from tether.store.sql import buckets as sqlb

T = TypeVar("T")


class SQLBuckets(BucketStore, abc.ABC):
    """Bucket operations over `_run` (one transaction each)."""

    dialect: Dialect

    @abc.abstractmethod
    async def _run(
        self, work: Callable[[Conn], Awaitable[T]], *, write: bool = True, durable: bool = True
    ) -> T:
        """Run `work` in a transaction of its own (`SQLStore._run`)."""

    async def take_from_buckets(self, takes: Sequence[Take], now: float) -> TakeOutcome:
        if not takes:
            return TakeOutcome(True)
        # A lost take costs at most a moment of over-admission after a crash: no flush
        # of its own (ADR 75). One bucket on PostgreSQL: one statement in autocommit,
        # its own transaction (BEGIN and COMMIT would be two round trips more, with the
        # row locked meanwhile). SQLite writes only in its write transaction.
        if len(takes) == 1 and self.dialect.name == "postgres":
            return await self._run(
                lambda c: sqlb.take(c, takes, now, sqlb.TAKE_ASYNC_COMMIT), write=False
            )
        try:
            return await self._run(lambda c: sqlb.take(c, takes, now), durable=False)
        except sqlb.Refused as refused:
            return refused.outcome

    async def adjust_bucket(
        self, key: BucketKey, amount: float, rate: float, burst: float, now: float
    ) -> None:
        if amount:
            await self._run(lambda c: sqlb.adjust(c, key, amount, rate, burst, now), durable=False)

    async def list_buckets(self, tenant: str | None) -> list[BucketState]:
        return await self._run(lambda c: sqlb.list_buckets(c, tenant), write=False)
