"""When a benchmark's tasks are done, as the database says.

A counter in the step (W1's, like the peers' Redis counter) says that the last step has
*run*; the task has succeeded only once its completion is committed, a few milliseconds
later. A clock stopped by the counter alone would time work that is not durable yet, so
the workloads wait for the counter (cheap, no load on the database while they drain)
and then for the store to count every task in the status they expect.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Protocol

from tether.models import TaskStatus
from tether.models.tasks import TERMINAL


class StatusCounts(Protocol):
    """The one store call this needs (`tether.store.base.Store.count_by_status`)."""

    async def count_by_status(self, tenant: str | None = None) -> dict[tuple[str, str], int]: ...


async def by_status(store: StatusCounts) -> Counter[str]:
    """Tasks per status, all tenants and queues together."""
    counts: Counter[str] = Counter()
    for (_queue, status), n in (await store.count_by_status()).items():
        counts[status] += n
    return counts


async def until_status(
    store: StatusCounts,
    status: TaskStatus,
    n: int,
    *,
    interval: float,
    timeout: float = 600.0,
) -> None:
    """Return once exactly `n` tasks are in `status`, polling every `interval` seconds.

    Raises as soon as the wait cannot end well: a task ended in another terminal status
    (it never will be counted), more than `n` are in `status` (the database holds tasks
    the benchmark did not submit), or `timeout` seconds passed."""
    deadline = time.perf_counter() + timeout
    while True:
        counts = await by_status(store)
        if counts[status] == n:
            return
        if counts[status] > n:
            raise RuntimeError(
                f"{counts[status]} tasks are {status}, expected {n}: {_show(counts)}"
            )
        astray = {s: c for s, c in counts.items() if s in TERMINAL and s != status and c}
        if astray:
            raise RuntimeError(f"tasks ended other than {status}: {_show(counts)}")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{counts[status]} of {n} tasks {status} after {timeout:g} s")
        await asyncio.sleep(interval)


def _show(counts: Counter[str]) -> str:
    return ", ".join(f"{s} {c}" for s, c in sorted(counts.items()))
