"""What the fleet-wide submission limit costs the submit path (ADR 90), in process.

    .venv/bin/python -m bench.submit_limits [sqlite|pg] [--seconds 5] [--callers 32]

On a fresh database of each backend (default both; PostgreSQL: TETHER_BENCH_PG_URL),
`--callers` concurrent callers each loop "take a token for the tenant, then submit a
no-op task" (what `POST /v1/tasks` does around its validation) for `--seconds`, with
each limiter in turn, interleaved, three rounds:

- `none`: no limit (the submits alone);
- `local`: a token bucket in this process's memory (ADR 23's, before this change);
- `store`: the fleet-wide bucket, one store round trip per submit (`lease_seconds=0`);
- `lease`: the fleet-wide bucket spent from local leases (the default).

The rate is high enough that nothing is refused: what is measured is the cost of
asking. Prints submits/s and this process's CPU per submit (medians of the rounds; on
a shared machine the CPU figure is the steadier one) and, for the store limiters, the
takes that went to the database per submit. Then, without the submits, the takes
alone: takes/s and CPU per take (a take that does not wait for the store never yields,
so the in-memory ones run one caller at a time).
A script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.common import fresh_database, unavailable
from tether import Context, Tether
from tether.flow import SubmitLimiter

RATE = 1e7
"""Tokens a second: never the limit here."""
TENANT = "bench"


@dataclass
class LocalBucket:
    """ADR 23's limiter: one bucket per tenant in this process's memory."""

    rate: float
    burst: float
    tokens: float = 0.0
    stamp: float = 0.0

    async def take(self, tenant: str, cost: float = 1.0) -> float:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class Counting:
    """Counts the takes that reach the store."""

    def __init__(self, app: Tether) -> None:
        self.app = app
        self.takes = 0
        inner = app.store.take_from_buckets

        async def counted(*args: object) -> object:
            self.takes += 1
            return await inner(*args)  # type: ignore[arg-type]

        app.store.take_from_buckets = counted  # type: ignore[method-assign]


def build_app(url: str) -> Tether:
    app = Tether(database_url=url)

    @app.workflow("noop")
    async def noop(ctx: Context, n: int) -> int:
        return n

    return app


Take = Callable[[str], Awaitable[float]]


async def run(
    seconds: float, callers: int, take: Take | None, submit: Tether | None
) -> tuple[int, float]:
    """Operations done by `callers` loops in `seconds`, and this process's CPU seconds."""
    done = 0
    end = time.monotonic() + seconds
    cpu = time.process_time()

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < end:
            if take is not None:
                assert await take(TENANT) == 0
            if submit is not None:
                await submit.submit("noop", {"n": 1}, tenant=TENANT)
            done += 1

    await asyncio.gather(*(loop() for _ in range(callers)))
    return done, time.process_time() - cpu


async def measure(label: str, url: str, args: argparse.Namespace) -> None:
    app = build_app(url)
    await app.open()
    counter = Counting(app)
    limiters: dict[str, Take | None] = {
        "none": None,
        "local": LocalBucket(RATE, RATE).take,
        "store": SubmitLimiter(app, RATE, RATE, lease_seconds=0).take,
        "lease": SubmitLimiter(app, RATE, RATE).take,
    }
    for what, submit in (("submits", app), ("takes", None)):
        rates: dict[str, list[float]] = {name: [] for name in limiters}
        trips: dict[str, list[float]] = {name: [] for name in limiters}
        cpus: dict[str, list[float]] = {name: [] for name in limiters}
        names = list(limiters)
        for round_ in range(3):
            # Each round in another order: the database grows as the rounds go.
            for name in names[round_:] + names[:round_]:
                take = limiters[name]
                if take is None and submit is None:
                    continue
                counter.takes = 0
                n, cpu = await run(args.seconds, args.callers, take, submit)
                rates[name].append(n / args.seconds)
                cpus[name].append(cpu / max(1, n) * 1e6)
                trips[name].append(counter.takes / max(1, n))
        for name in limiters:
            if not rates[name]:
                continue
            per_s = statistics.median(rates[name])
            line = f"{label:<10} {what:<7} {name:<6} {per_s:9.0f}/s"
            line += f"  {statistics.median(cpus[name]):8.1f} µs of CPU a {what[:-1]}"
            if name in ("store", "lease"):
                line += f"  {statistics.median(trips[name]):.3f} store takes per {what[:-1]}"
            print(line, flush=True)
    await app.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("backend", nargs="?", default="sqlite,pg", help="sqlite, pg or both")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--callers", type=int, default=32)
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
