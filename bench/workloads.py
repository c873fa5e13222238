"""W1-W4, in process, exactly as the peers were measured (../shared/peerbench/NOTES.md).

Each function gets a fresh, empty database and returns its metrics for one run. The
schema is created before the clock starts (the peers' set-ups did the same).
"""

from __future__ import annotations

import asyncio
import time

from bench.apps import Counter, build_app
from bench.common import Sizes, pct
from bench.completion import until_status
from tether.models import TaskStatus


async def w1(url: str, sizes: Sizes) -> dict[str, float]:
    """W1 throughput: enqueue N no-op single-step tasks with no worker, then drain.

    The drain ends when the database counts all N tasks succeeded: the in-memory
    counter in the step (no polling while the worker drains) says when to start
    looking, and `w1_settle_ms` is how long after it the last completion was counted."""
    counter = Counter()
    app = build_app(url, counter)
    await app.open()
    try:
        counter.reset(sizes.w1)
        t0 = time.perf_counter()
        await app.submit_many("noop", list(range(sizes.w1)))
        t_enq = time.perf_counter() - t0
        t1 = time.perf_counter()
        async with app.worker(concurrency=sizes.concurrency):
            await asyncio.wait_for(counter.event.wait(), 600)
            t_counted = time.perf_counter()
            await until_status(app.store, TaskStatus.SUCCEEDED, sizes.w1, interval=0.001)
            t_end = time.perf_counter()
        t_drain = t_end - t1
        return {
            "w1_enqueue_s": t_enq,
            "w1_drain_s": t_drain,
            "w1_tasks_per_s": sizes.w1 / (t_enq + t_drain),
            "w1_settle_ms": (t_end - t_counted) * 1000,
        }
    finally:
        await app.close()


async def w2(url: str, sizes: Sizes) -> dict[str, float]:
    """W2 step overhead: one workflow of N sequential trivial durable steps (sync step
    functions, as the peers' harness; the async variant is reported alongside)."""
    app = build_app(url)
    await app.open()
    out: dict[str, float] = {}
    try:
        async with app.worker(concurrency=sizes.concurrency):
            for key, workflow in (("w2_ms_per_step", "steps"), ("w2_async_ms_per_step", "asteps")):
                t0 = time.perf_counter()
                handle = await app.submit(workflow, sizes.w2)
                await handle.result(timeout=600)
                out[key] = (time.perf_counter() - t0) * 1000 / sizes.w2
        return out
    finally:
        await app.close()


async def w3(url: str, sizes: Sizes) -> dict[str, float]:
    """W3 agent-like I/O: N tasks of 3 x asyncio.sleep(0.05) steps at the worker's
    concurrency (100 in flight); from first submit to last result."""
    app = build_app(url)
    await app.open()
    try:
        async with app.worker(concurrency=sizes.concurrency):
            t0 = time.perf_counter()
            handles = await app.submit_many("agentlike", list(range(sizes.w3)))
            await asyncio.gather(*(h.result(timeout=600) for h in handles))
            return {"w3_total_s": time.perf_counter() - t0}
    finally:
        await app.close()


async def w4(url: str, sizes: Sizes) -> dict[str, float]:
    """W4 latency: sequential submit-then-wait round trips on an idle worker (5
    warm-ups discarded)."""
    app = build_app(url)
    await app.open()
    try:
        latencies: list[float] = []
        async with app.worker(concurrency=sizes.concurrency):
            for i in range(sizes.w4 + 5):
                t0 = time.perf_counter()
                handle = await app.submit("ping", i)
                await handle.result(timeout=60)
                if i >= 5:
                    latencies.append((time.perf_counter() - t0) * 1000)
        return {"w4_p50_ms": pct(latencies, 50), "w4_p99_ms": pct(latencies, 99)}
    finally:
        await app.close()
