"""W4 across processes (issues 3 and 14): how long after `submit` is called the first
step of the task starts on an idle worker in ANOTHER process, and the whole round trip
(submit, run there, result back here) — the path a multi-machine deployment takes
(PostgreSQL: LISTEN/NOTIFY; SQLite: the doorbell, ADR 74). The W4 of `python -m bench`
is in-process (an idle worker in the submitter's own process runs the task at once).

usage: python -m bench.start_latency [sqlite|pg] [N]      (default: both, N=200)

Prints p50/p99 in ms per backend, each on a fresh database (PostgreSQL: on the server
of TETHER_BENCH_PG_URL, bench/common.py). The worker runs in a subprocess of this
script; the step records `time.time()` when it starts, on the same machine clock as the
submitter.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time

from bench.common import fresh_database
from tether import Context, Tether


def build_app(url: str) -> Tether:
    app = Tether(database_url=url)

    async def started() -> float:
        return time.time()

    @app.workflow("stamp")
    async def stamp(ctx: Context, i: int) -> float:
        return await ctx.step("started", started)

    return app


async def _worker(url: str) -> None:
    app = build_app(url)
    async with app.worker(concurrency=10):
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await app.close()


def _p50_p99(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), statistics.quantiles(samples, n=100)[98]


async def measure(backend: str, n: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """(p50, p99) of submit-to-start and of the round trip, in ms."""
    with fresh_database(backend) as url:
        app = build_app(url)
        await app.open()  # creates the schema before the worker starts
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.start_latency",
            "--worker",
            url,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert worker.stdout is not None
            assert (await worker.stdout.readline()).strip() == b"ready"
            to_start, round_trip = [], []
            for i in range(n + 5):
                await asyncio.sleep(0.02)  # idle between tasks
                t0 = time.time()
                handle = await app.submit("stamp", i)
                started = float(await handle.result(timeout=30))
                back = time.time()
                if i >= 5:  # warm-up
                    to_start.append((started - t0) * 1000)
                    round_trip.append((back - t0) * 1000)
        finally:
            if worker.stdin is not None:
                worker.stdin.close()
            await asyncio.wait_for(worker.wait(), 30)
            await app.close()
    return _p50_p99(to_start), _p50_p99(round_trip)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        asyncio.run(_worker(sys.argv[2]))
        return
    backends = [a for a in sys.argv[1:2] if a in ("sqlite", "pg")] or ["sqlite", "pg"]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    for backend in backends:
        (s50, s99), (r50, r99) = asyncio.run(measure(backend, n))
        print(
            f"{backend}: W4 across processes, idle worker, n={n}: submit-to-start p50 "
            f"{s50:.2f} ms, p99 {s99:.2f} ms; round trip p50 {r50:.2f} ms, p99 {r99:.2f} ms",
            flush=True,
        )


if __name__ == "__main__":
    main()
