"""Rate-limit accuracy (issue 16, goal: the admitted rate within 5% of the configured
rate over 60 s): worker processes share one bucket in the database (ADR 90).

    .venv/bin/python -m bench.rate_limits [sqlite|pg] [--seconds 60] [--rate 20]
        [--processes 2] [--concurrency 50]

On a fresh database of each backend (default both; PostgreSQL: TETHER_BENCH_PG_URL,
bench/common.py), `--processes` worker processes run tasks whose one step calls the
integration `bench`, limited to `--rate` requests a second (a burst of one second).
More tasks are submitted than the bucket admits in the run, so it is never short of
demand. The admissions are the steps' start times in the step log (the clock read
right after the gate granted). After two seconds of warm-up (the first burst), the
steps started in the next `--seconds` seconds are counted: the admitted rate against
the configured one, the most admitted in any one-second window (the bucket allows its
burst plus one second of its rate), the share each process took, and how often an
admitted step was held before it ran (its task's `task.waiting` events).
A script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import signal
import sys
import time
from typing import Any

from bench.common import HERE, fresh_database, unavailable
from tether import Context, Tether

WARMUP = 2.0
"""Seconds skipped after the first admission: the bucket's first burst."""
STEP = "call"


def build_app(url: str, rate: float) -> Tether:
    app = Tether(database_url=url)
    app.rate_limit("bench", requests_per_minute=rate * 60, burst_seconds=1.0)

    @app.step(name=STEP, integration="bench")
    async def call() -> str:
        return os.environ.get("BENCH_WORKER", "?")

    @app.workflow("limited")
    async def limited(ctx: Context, i: int) -> str:
        return await call()

    return app


async def work(url: str, rate: float, concurrency: int) -> None:
    """Child process: a worker until SIGTERM."""
    app = build_app(url, rate)
    await app.open()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with app.worker(concurrency=concurrency):
        print("ready", flush=True)
        await stop.wait()
    await app.close()


async def admissions(app: Tether) -> tuple[list[float], dict[str, int], int]:
    """The start times of the limited steps, sorted; how many each worker process ran
    (the step returns its name); and the `task.waiting` events of their tasks."""

    async def read(conn: Any) -> tuple[list[float], dict[str, int], int]:
        rows = await conn.fetchall("SELECT started_at, result FROM steps WHERE name = %s", (STEP,))
        held = await conn.fetchone(
            "SELECT COUNT(*) AS n FROM events WHERE type = 'task.waiting' AND task_id IN "
            "(SELECT task_id FROM steps WHERE name = %s)",
            (STEP,),
        )
        by_worker: dict[str, int] = {}
        for r in rows:
            worker = json.loads(r["result"]) if r["result"] else "?"
            by_worker[worker] = by_worker.get(worker, 0) + 1
        return sorted(float(r["started_at"]) for r in rows), by_worker, int(held["n"])

    result: tuple[list[float], dict[str, int], int] = await app.store._run(  # type: ignore[attr-defined]
        read, write=False
    )
    return result


async def measure(label: str, url: str, args: argparse.Namespace) -> None:
    app = build_app(url, args.rate)
    await app.open()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), *sys.path])}
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.rate_limits",
            "--work",
            url,
            str(args.rate),
            str(args.concurrency),
            cwd=HERE.parent,
            env={**env, "BENCH_WORKER": f"w{i}"},
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(args.processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert (await child.stdout.readline()).strip() == b"ready"
        demand = int(args.rate * (args.seconds + WARMUP + 5) * 1.2) + 100
        await app.submit_many("limited", [{"i": i} for i in range(demand)])
        end = time.time() + args.seconds + WARMUP + 30  # the first step may take a while
        while time.time() < end:
            await asyncio.sleep(1)
            times, _, _ = await admissions(app)
            if times and times[-1] >= times[0] + WARMUP + args.seconds + 0.5:
                break
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            await asyncio.wait_for(child.wait(), 60)
    times, by_worker, held = await admissions(app)
    await app.close()
    if not times:
        print(f"{label}: nothing was admitted", flush=True)
        return
    start = times[0] + WARMUP
    stop = start + args.seconds
    window = [t for t in times if start <= t < stop]
    admitted = len(window) / args.seconds
    error = (admitted - args.rate) / args.rate * 100
    busiest = max(
        bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times) if t >= times[0]
    )
    burst = max(1.0, args.rate * 1.0)
    print(
        f"{label:<10} {args.processes} processes  configured {args.rate:.2f}/s  "
        f"admitted {admitted:.2f}/s over {args.seconds:.0f} s ({error:+.2f}%)  "
        f"most in 1 s {busiest} (allowed {burst + args.rate:.0f})  "
        f"holds per admitted step {held / max(1, len(times)):.2f}"
        + "".join(f"  {w} {n}" for w, n in sorted(by_worker.items())),
        flush=True,
    )


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--work":
        asyncio.run(work(sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("backend", nargs="?", default="sqlite,pg", help="sqlite, pg or both")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=20, help="requests a second")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    status = 0
    for backend in [b.strip() for b in args.backend.split(",") if b.strip()]:
        label = {"sqlite": "sqlite", "pg": "postgresql"}[backend]
        reason = asyncio.run(unavailable(backend))
        if reason is not None:
            print(f"{label}: unavailable: {reason}", flush=True)
            status = 1
            continue
        with fresh_database(backend) as url:
            asyncio.run(measure(label, url, args))
    return status


if __name__ == "__main__":
    sys.exit(main())
