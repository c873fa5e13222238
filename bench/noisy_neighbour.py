"""Noisy neighbour (issue 16, fair claiming, ADR 88): does one tenant's backlog hold
back another's work?

usage: python -m bench.noisy_neighbour [sqlite|pg] [RUNS]     (default: both, 3 runs)

One in-process worker (concurrency 50) runs a workflow of one step that takes 2 ms
(an `asyncio.sleep`, I/O-bound like agent work). Three scenarios, each on a fresh
database, RUNS times, interleaved:
- `alone`: tenant B submits 100 tasks to an idle system;
- `fair`: tenant A submits 10,000 tasks, then B its 100 (fair claiming on, default);
- `fifo`: the same with `fair_claims = false`.
Printed per scenario: B's p50 / p95 time from its submission to each task's end (the
stored `finished_at`), and the ratio of B's p95 to `alone`'s (goal: fair at most 2x), and
how many of A's tasks ended before B's last.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from bench.common import fresh_database, pct
from tether import Context, TaskFilter, TaskStatus, Tether
from tether.config import load_settings

A_TASKS = 10_000
B_TASKS = 100
CONCURRENCY = 50


def build(url: str, fair: bool, b_done: asyncio.Event) -> Tether:
    app = Tether(settings=load_settings({"database_url": url, "fair_claims": fair}))
    ran = {"b": 0}

    @app.workflow("work")
    async def work(ctx: Context, n: int) -> int:
        async def call() -> int:
            await asyncio.sleep(0.002)
            return n

        result = await ctx.step("call", call)
        if ctx.task.tenant == "b":
            ran["b"] += 1
            if ran["b"] == B_TASKS:
                b_done.set()
        return result

    return app


async def _ended(app: Tether, tenant: str, count: int) -> list[float]:
    """The stored `finished_at` of `tenant`'s tasks once `count` of them succeeded."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        flt = TaskFilter(tenant=tenant, status=[TaskStatus.SUCCEEDED], limit=count)
        tasks = await app.list_tasks(flt)
        if len(tasks) >= count:
            return [t.finished_at for t in tasks if t.finished_at is not None]
        await asyncio.sleep(0.005)
    raise TimeoutError(f"{tenant}'s {count} tasks were not stored as ended within 60 s")


async def scenario(url: str, name: str) -> dict[str, float]:
    b_done = asyncio.Event()
    app = build(url, name != "fifo", b_done)
    await app.open()
    try:
        async with app.worker(concurrency=CONCURRENCY):
            if name != "alone":
                await app.submit_many("work", [{"n": i} for i in range(A_TASKS)], tenant="a")
            submitted = app.clock.now()
            await app.submit_many("work", [{"n": i} for i in range(B_TASKS)], tenant="b")
            await asyncio.wait_for(b_done.wait(), 300)
            ends = await _ended(app, "b", B_TASKS)
            waits = [e - submitted for e in ends]
            ahead = 0
            if name != "alone":
                last = max(ends)
                a_done = await app.list_tasks(
                    TaskFilter(tenant="a", status=[TaskStatus.SUCCEEDED], limit=A_TASKS)
                )
                ahead = sum(1 for t in a_done if t.finished_at and t.finished_at <= last)
        return {"p50": pct(waits, 50), "p95": pct(waits, 95), "a_before": ahead}
    finally:
        await app.close()


async def main(backends: list[str], runs: int) -> None:
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for backend in backends:
        for _ in range(runs):
            for name in ("alone", "fair", "fifo"):
                with fresh_database(backend) as url:
                    results.setdefault((backend, name), []).append(await scenario(url, name))
    for backend in backends:
        alone = statistics.median(r["p95"] for r in results[(backend, "alone")])
        print(
            f"{backend}: tenant B's 100 tasks behind tenant A's {A_TASKS:,} ({runs} runs, median)"
        )
        for name in ("alone", "fair", "fifo"):
            rs = results[(backend, name)]
            p50 = statistics.median(r["p50"] for r in rs) * 1000
            p95 = statistics.median(r["p95"] for r in rs) * 1000
            ahead = statistics.median(r["a_before"] for r in rs)
            print(
                f"  {name:6} B p50 {p50:8.1f} ms  p95 {p95:8.1f} ms  "
                f"{p95 / 1000 / alone:6.2f}x alone   A tasks ended first: {ahead:,.0f}"
            )


def _args(argv: list[str]) -> tuple[list[str], int]:
    backends = [a for a in argv if a in ("sqlite", "pg")] or ["sqlite", "pg"]
    numbers = [int(a) for a in argv if a.isdigit()]
    return backends, numbers[0] if numbers else 3


if __name__ == "__main__":
    asyncio.run(main(*_args(sys.argv[1:])))
