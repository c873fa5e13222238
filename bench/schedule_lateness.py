"""Cron tick lateness at idle (issue 18, goal < 1 s): how long after its tick a
per-second schedule's task is created, and how long after the tick its first step
starts, on idle workers whose schedulers race on every tick (ADR 77).

usage: python -m bench.schedule_lateness [sqlite|pg] [N]      (default: both, N=20)

For 1 and for 3 workers (each with its scheduler) in this process, N ticks of
`* * * * * *`; prints p50 / p95 / max in ms of the task's creation after its tick
(`created_at` - tick) and of its first step's start after the tick, and checks that
every tick made exactly one task. PostgreSQL: TETHER_BENCH_PG_URL (bench.common).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from contextlib import AsyncExitStack

from bench.common import fresh_database
from tether import Context, TaskFilter, Tether
from tether.schedules import ScheduleSpec, scheduled_tick
from tether.services import schedules

TENANT = "bench"


def build_app(url: str) -> Tether:
    app = Tether(database_url=url)

    async def started() -> float:
        return time.time()

    @app.workflow("tick")
    async def tick(ctx: Context) -> float:
        return await ctx.step("started", started)

    return app


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered) * 1000:7.1f} {p95 * 1000:7.1f} {ordered[-1] * 1000:7.1f}"


async def measure(url: str, workers: int, ticks: int) -> tuple[list[float], list[float]]:
    apps = [build_app(url) for _ in range(workers)]
    async with AsyncExitStack() as stack:
        for app in apps:
            await app.open()
            await stack.enter_async_context(app.worker(concurrency=10))
        app = apps[0]
        await schedules.create(app, TENANT, ScheduleSpec("every-second", "tick", "* * * * * *"))
        deadline = time.monotonic() + ticks + 10
        while True:
            found = await app.list_tasks(TaskFilter(tenant=TENANT, limit=1000))
            done = [t for t in found if t.status.terminal]
            if len(done) >= ticks or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        await schedules.pause(app, "every-second", TENANT)
        found = await app.list_tasks(TaskFilter(tenant=TENANT, limit=1000))
    keyed = [(scheduled_tick(t.idempotency_key), t) for t in found]
    on_ticks = sorted(tick for tick, _ in keyed if tick is not None)
    assert len(set(on_ticks)) == len(on_ticks), "a tick made two tasks"
    created = [t.created_at - tick for tick, t in keyed if tick is not None]
    started = [float(t.result) - tick for tick, t in keyed if tick is not None and t.result]
    for app in apps:
        await app.close()
    return created, started


async def main(backends: list[str], ticks: int) -> None:
    print(f"cron tick lateness at idle, `* * * * * *`, {ticks} ticks (ms: p50 p95 max)")
    head = ("backend", "workers", "task created after tick", "step started after tick")
    print(f"{head[0]:8} {head[1]:>7}  {head[2]:>23}  {head[3]:>23}")
    for backend in backends:
        for workers in (1, 3):
            with fresh_database(backend) as url:
                created, started = await measure(url, workers, ticks)
            print(f"{backend:8} {workers:7d}  {_ms(created):>23}  {_ms(started):>23}")


if __name__ == "__main__":
    args = sys.argv[1:]
    chosen = [a for a in args if a in ("sqlite", "pg")] or ["sqlite", "pg"]
    count = next((int(a) for a in args if a.isdigit()), 20)
    asyncio.run(main(chosen, count))
