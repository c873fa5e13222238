"""Rate-limit buckets, read-only: how full each bucket in the database is (ADR 90),
for `/metrics` and for operators. A tenant is shown its own buckets only: the shared
ones count every tenant's calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tether.models.buckets import BucketState

if TYPE_CHECKING:
    from tether.app import Tether


async def buckets(app: Tether, tenant: str | None = None) -> list[BucketState]:
    """The buckets of `tenant` (None: every bucket, the shared ones among them), as
    the database keeps them; `BucketState.available(now)` says how full."""
    await app.open()
    return await app.store.list_buckets(tenant)
