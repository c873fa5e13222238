"""W5 parked tasks: what a waiting task costs the worker that parked it, in bytes.

The claim (README: "a waiting task holds no worker slot, memory or connection") is
measured as a slope: one worker process (bench/proc_worker.py, with tracemalloc from
its start) runs `w5_parked_low` tasks to a `wait_for_signal`, then `w5_parked_high` in
all; its memory is read at both points, each once the worker is idle, and the
difference is divided by the tasks parked in between. Fixed costs (imports, pools,
caches filled before the low point) cancel out; bounded caches still filling between
the two points show as a few bytes per task; anything kept per parked task shows whole.

- `w5_parked_heap_bytes_per_task`: the Python heap (tracemalloc). The claim's figure.
- `w5_parked_rss_bytes_per_task`: resident memory, which also grows with caches that
  are bounded but larger than the low point fills: SQLite's page cache above all
  (32 MB per connection, filled as the database grows), reported apart on SQLite as
  `w5_parked_sqlite_bytes_per_task` (the library's own count).
- `w5_parked_held_tasks`: tasks the worker still holds at the high point (should be 0).
- `w5_idle_rss_mb`: the worker's resident memory before its first task.
"""

from __future__ import annotations

from bench.apps import build_app
from bench.common import Sizes
from bench.completion import until_status
from bench.scale import Child
from tether import Tether
from tether.models import TaskStatus

SUBMIT_CHUNK = 5000
"""Tasks per `submit_many` (one transaction each)."""


async def parked(url: str, sizes: Sizes, run: int, backend: str) -> dict[str, float]:
    """One run of W5 parked on a fresh database (see the module's docstring)."""
    low, high = sizes.w5_parked_low, sizes.w5_parked_high
    if not 0 < low < high:
        raise ValueError(f"w5_parked sizes must be 0 < low < high, not {low}, {high}")
    app = build_app(url)
    await app.open()
    child = await Child.start(url, sizes.concurrency, trace=True)
    try:
        await child.send("go")
        await child.expect("started")
        idle = await child.memory()
        await _park(app, 0, low)
        at_low = await child.memory()
        await _park(app, low, high)
        at_high = await child.memory()
    finally:
        await child.stop()
        await app.close()

    def slope(key: str) -> float:
        return float(at_high[key] - at_low[key]) / (high - low)

    out = {
        "w5_idle_rss_mb": idle["rss"] / 2**20,
        "w5_parked_heap_bytes_per_task": slope("traced"),
        "w5_parked_rss_bytes_per_task": slope("rss"),
        "w5_parked_held_tasks": float(at_high["active"]),
    }
    if backend == "sqlite":
        out["w5_parked_sqlite_bytes_per_task"] = slope("sqlite")
    return out


async def _park(app: Tether, start: int, stop: int) -> None:
    """Submit tasks `start` .. `stop - 1` and wait until all `stop` so far are waiting."""
    for first in range(start, stop, SUBMIT_CHUNK):
        await app.submit_many("waiter", list(range(first, min(first + SUBMIT_CHUNK, stop))))
    await until_status(app.store, TaskStatus.WAITING, stop, interval=0.05)
