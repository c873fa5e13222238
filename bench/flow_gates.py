"""What the integration gate (ADR 91) costs a step, and how fast a step limit hands its
slot on, on SQLite and PostgreSQL.

    python -m bench.flow_gates [N] [--backend sqlite,pg]

1. Per step: one task running N sequential trivial steps that name the integration
   `crm`, with nothing configured, with a (closed) breaker, with a step limit, and with
   both; the median and p90 time per step of each.
2. Hand-off: N one-step tasks through a step limit of 1 on a worker of 50 slots, every
   slot freed by a holder handed to the next waiter (its task woken): steps per second
   through the limit, against the same tasks with no limit.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.common import fresh_database
from tether import Context, Tether

KINDS = ("none", "breaker", "limit", "both")


def _app(url: str, kind: str, max_running: int = 1000) -> Tether:
    app = Tether(url)
    if kind in ("breaker", "both"):
        app.breaker("crm", failures=5)
    if kind in ("limit", "both"):
        app.step_limit("crm", max_running=max_running)
    return app


async def per_step(url: str, n: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for kind in KINDS:
        app = _app(url, kind)

        @app.workflow("steps")
        async def steps(ctx: Context, n: int, kind: str) -> None:
            for i in range(n):
                started = time.perf_counter()
                await ctx.step(f"s{i}", _noop, integration="crm")
                times[kind].append(time.perf_counter() - started)

        async with app.worker():
            for _ in range(2):  # warm, then measure
                times[kind].clear()
                handle = await app.submit("steps", {"n": n, "kind": kind})
                await handle.result(timeout=600)
        await app.close()
    return times


async def hand_off(url: str, n: int) -> dict[str, float]:
    rates: dict[str, float] = {}
    for kind in ("none", "limit"):
        app = _app(url, kind, max_running=1)

        @app.workflow("one")
        async def one(ctx: Context) -> None:
            await ctx.step("call", _noop, integration="crm")

        async with app.worker(concurrency=50, poll_interval=0.05):
            started = time.perf_counter()
            handles = [await app.submit("one") for _ in range(n)]
            for h in handles:
                await h.result(timeout=600)
            rates[kind] = n / (time.perf_counter() - started)
        await app.close()
    return rates


async def _noop() -> int:
    return 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.flow_gates")
    parser.add_argument("n", nargs="?", type=int, default=500)
    parser.add_argument("--backend", default="sqlite,pg")
    args = parser.parse_args()
    for backend in args.backend.split(","):
        with fresh_database(backend) as url:
            times = asyncio.run(per_step(url, args.n))
        base = statistics.median(times["none"]) * 1000
        for kind in KINDS:
            med = statistics.median(times[kind]) * 1000
            p90 = statistics.quantiles(times[kind], n=10)[-1] * 1000
            print(
                f"{backend:6} {kind:8} median {med:.3f} ms  p90 {p90:.3f} ms  "
                f"({med - base:+.3f} ms per step, {args.n} steps)"
            )
        with fresh_database(backend) as url:
            rates = asyncio.run(hand_off(url, args.n))
        print(
            f"{backend:6} hand-off: {rates['limit']:.0f} steps/s through a limit of 1 "
            f"({rates['none']:.0f}/s without; {args.n} one-step tasks)"
        )


if __name__ == "__main__":
    main()
