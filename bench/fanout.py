"""Fan-out (issue 18): the time to start and finish N children of one parent, against
N top-level tasks of the same workflow. Goal: the children within 1.5x.

usage: python -m bench.fanout [sqlite|pg] [N] [ROUNDS]   (default: both, N=1000, 5)

Each round runs on a fresh database (PostgreSQL: on the server of TETHER_BENCH_PG_URL,
bench/common.py) with one in-process worker (concurrency 100), and times, from the
call that hands the work over to the moment its outcome is back:
- top-level: `app.submit_many("child", range(N))` (one transaction), then every
  task's result;
- children: `app.submit("parent", N)`, whose workflow starts N children with
  `ctx.start_child` and gathers them (`asyncio.gather`), then the parent's result.
Each child runs one step. The medians of the rounds are printed with their ratio.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from bench.common import fresh_database
from tether import Context, Tether

CONCURRENCY = 100


def build_app(url: str) -> Tether:
    app = Tether(database_url=url)

    async def work(i: int) -> int:
        return i

    @app.workflow("child")
    async def child(ctx: Context, i: int) -> int:
        return await ctx.step("work", work, i)

    @app.workflow("parent")
    async def parent(ctx: Context, n: int) -> int:
        return sum(await asyncio.gather(*(ctx.start_child("child", i) for i in range(n))))

    return app


async def _top_level(app: Tether, n: int) -> float:
    t0 = time.perf_counter()
    handles = await app.submit_many("child", list(range(n)))
    results = await asyncio.gather(*(h.result(timeout=300) for h in handles))
    elapsed = time.perf_counter() - t0
    assert sum(results) == n * (n - 1) // 2
    return elapsed


async def _children(app: Tether, n: int) -> float:
    t0 = time.perf_counter()
    handle = await app.submit("parent", n)
    total = await handle.result(timeout=300)
    elapsed = time.perf_counter() - t0
    assert total == n * (n - 1) // 2
    return elapsed


async def measure(backend: str, n: int, rounds: int) -> tuple[float, float]:
    """Median seconds of (top-level, children) over `rounds` fresh databases each."""
    top, kids = [], []
    for _ in range(rounds):
        for samples, run in ((top, _top_level), (kids, _children)):
            with fresh_database(backend) as url:
                app = build_app(url)
                async with app.worker(concurrency=CONCURRENCY):
                    samples.append(await run(app, n))
                await app.close()
    return statistics.median(top), statistics.median(kids)


def main() -> None:
    backends = [a for a in sys.argv[1:2] if a in ("sqlite", "pg")] or ["sqlite", "pg"]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    for backend in backends:
        top, kids = asyncio.run(measure(backend, n, rounds))
        print(
            f"{backend}: fan-out of {n}, median of {rounds}: {n} top-level tasks "
            f"{top * 1000:.0f} ms, {n} children of one parent {kids * 1000:.0f} ms, "
            f"ratio {kids / top:.2f}x (goal <= 1.5x)",
            flush=True,
        )


if __name__ == "__main__":
    main()
