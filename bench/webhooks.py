"""Webhooks (issue 15): delivery rate, delay at idle, and what they cost W1.

- `wh_rate`: N tasks end first (no dispatcher), then one dispatcher delivers their N
  `task.succeeded` deliveries to a receiver in another process; deliveries per second
  from the dispatcher's start (fan-out of the backlog included) to the last recorded.
- `wh_latency`: at idle, sequential tasks on a worker with its dispatcher; the delay
  from the task's end (`finished_at` in the body, the time of its finishing commit)
  to the receiver reading the request (same machine clock), p50 and p99.
- `wh_w1`: W1 as `workloads.w1` (enqueue N, drain until the store counts all N
  succeeded), with a subscription matching every task and the receiver in another
  process; tasks/s beside W1 without any subscription in the same run, with the
  dispatcher in the worker's process (`same`) and in a process of its own (`split`),
  and the seconds until every delivery was recorded.

The receiver is `tests/receiver.py` (the one the fault tests use), in a subprocess:
`python -m bench.webhooks --receiver` prints its port and serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bench.apps import Counter, build_app
from bench.common import HERE, Sizes, pct
from bench.completion import until_status
from tether import Tether
from tether.egress import EgressPolicy
from tether.models import TaskStatus
from tether.services import webhooks

LOCAL = EgressPolicy(allow=["127.0.0.1"])


@asynccontextmanager
async def receiver_process() -> AsyncIterator[str]:
    """A receiver in its own process; yields its URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.webhooks",
        "--receiver",
        cwd=str(HERE.parent),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        port = int((await proc.stdout.readline()).strip())
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _app(url: str, counter: Counter | None = None) -> Tether:
    app = build_app(url, counter)
    app.egress_policy = LOCAL
    return app


async def _wait_delivered(app: Tether, dispatcher_count: object, n: int, timeout: float) -> None:
    end = time.perf_counter() + timeout
    while getattr(dispatcher_count, "delivered", 0) < n:
        if time.perf_counter() > end:
            raise TimeoutError(f"only {getattr(dispatcher_count, 'delivered', 0)}/{n} delivered")
        await asyncio.sleep(0.005)


async def wh_rate(url: str, sizes: Sizes) -> dict[str, float]:
    """Deliveries per second from one dispatcher to a receiver in another process."""
    n = sizes.w1
    counter = Counter()
    app = _app(url, counter)
    await app.open()
    try:
        async with receiver_process() as hook:
            await webhooks.create(app, "default", hook, ["task.succeeded"])
            counter.reset(n)
            await app.submit_many("noop", list(range(n)))
            async with app.worker(concurrency=sizes.concurrency, webhooks=False):
                await asyncio.wait_for(counter.event.wait(), 600)
                await until_status(app.store, TaskStatus.SUCCEEDED, n, interval=0.001)
            dispatcher = app.dispatcher()
            t0 = time.perf_counter()
            async with dispatcher:
                await _wait_delivered(app, dispatcher, n, 600)
                elapsed = time.perf_counter() - t0
        return {"wh_deliveries_per_s": n / elapsed, "wh_rate_s": elapsed}
    finally:
        await app.close()


async def wh_latency(url: str, sizes: Sizes) -> dict[str, float]:
    """Task end to webhook arrival, at idle (the receiver in process, same clock)."""
    import sys as _sys

    _sys.path.insert(0, str(HERE.parent / "tests"))
    from receiver import Receiver  # tests/receiver.py

    app = _app(url)
    await app.open()
    delays: list[float] = []
    try:
        async with Receiver() as receiver:
            await webhooks.create(app, "default", f"{receiver.url}/hook", ["task.succeeded"])
            async with app.worker(concurrency=sizes.concurrency):
                for i in range(sizes.w4 + 5):
                    await asyncio.sleep(0.02)  # idle between tasks
                    seen = len(receiver.requests)
                    await app.submit("ping", i)
                    await receiver.wait_for(lambda rs, seen=seen: len(rs) > seen, 30)
                    got = receiver.requests[-1]
                    finished = json.loads(got.body)["data"]["task"]["finished_at"]
                    if i >= 5:
                        delays.append((got.wall - finished) * 1000)
        return {"wh_delay_p50_ms": pct(delays, 50), "wh_delay_p99_ms": pct(delays, 99)}
    finally:
        await app.close()


async def wh_w1(url: str, sizes: Sizes) -> dict[str, float]:
    """W1 with a subscription matching every task, beside W1 without one (same run):
    with the dispatcher in the worker's process (as `app.worker()` runs it), and in a
    process of its own (`--no-workers` servers, or `webhooks = false` on the workers)."""
    out: dict[str, float] = {}
    async with receiver_process() as hook:
        for mode in ("base", "same", "split"):
            counter = Counter()
            app = _app(url, counter)
            await app.open()
            try:
                await _reset(app)
                if mode != "base":
                    await webhooks.create(app, "default", hook, ["task.succeeded"])
                async with _dispatcher_process(url, mode == "split"):
                    counter.reset(sizes.w1)
                    t0 = time.perf_counter()
                    await app.submit_many("noop", list(range(sizes.w1)))
                    worker = app.worker(concurrency=sizes.concurrency, webhooks=mode == "same")
                    async with worker:
                        await asyncio.wait_for(counter.event.wait(), 600)
                        await until_status(
                            app.store, TaskStatus.SUCCEEDED, sizes.w1, interval=0.001
                        )
                        out[f"wh_w1_{mode}_tasks_per_s"] = sizes.w1 / (time.perf_counter() - t0)
                        if mode != "base":
                            await _wait_all_delivered(app, sizes.w1, 600)
                            out[f"wh_w1_{mode}_all_delivered_s"] = time.perf_counter() - t0
            finally:
                await app.close()
    for mode in ("same", "split"):
        ratio = out[f"wh_w1_{mode}_tasks_per_s"] / out["wh_w1_base_tasks_per_s"]
        out[f"wh_w1_{mode}_cost_pct"] = 100 * (1 - ratio)
    return out


async def _wait_all_delivered(app: Tether, n: int, timeout: float) -> None:
    async def count(conn: object) -> int:
        row = await conn.fetchone(  # type: ignore[attr-defined]
            "SELECT COUNT(*) AS n FROM webhook_deliveries WHERE status = 'delivered'"
        )
        return int(row["n"])

    end = time.perf_counter() + timeout
    while await app.store._run(count, write=False) < n:  # type: ignore[attr-defined]
        if time.perf_counter() > end:
            raise TimeoutError("not every delivery was recorded")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def _dispatcher_process(url: str, wanted: bool) -> AsyncIterator[None]:
    if not wanted:
        yield
        return
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.webhooks",
        "--dispatch",
        url,
        cwd=str(HERE.parent),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        await proc.wait()


async def _serve_dispatcher(url: str) -> None:
    app = _app(url)
    async with app.dispatcher():
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await app.close()


async def _reset(app: Tether) -> None:
    """Empty the tables the previous half of `wh_w1` filled (same database)."""

    async def wipe(conn: object) -> None:
        for table in (
            "webhook_deliveries",
            "webhook_subscriptions",
            "events",
            "steps",
            "idempotency_keys",
            "tasks",
        ):
            await conn.execute(f"DELETE FROM {table}")  # type: ignore[attr-defined]
        # SQLite hands out event ids from 1 again: the fan-out starts from the start.
        await conn.execute("UPDATE webhook_cursor SET after = 0")  # type: ignore[attr-defined]

    await app.store._run(wipe)  # type: ignore[attr-defined]


async def _serve_receiver() -> None:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from receiver import Behaviour, Receiver  # tests/receiver.py

    async with Receiver(Behaviour(record=False)) as receiver:
        print(receiver.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    if sys.argv[1:] == ["--receiver"]:
        asyncio.run(_serve_receiver())
    elif sys.argv[1:2] == ["--dispatch"]:
        asyncio.run(_serve_dispatcher(sys.argv[2]))
