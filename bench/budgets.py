"""What budgets cost a step: one task running N sequential steps, on SQLite and
PostgreSQL, as `plain` steps (no estimate, no charge: the gate answers from memory),
steps that charge with no budget (`charge`: the spend is booked, one transaction),
steps that declare an estimate and charge under a task budget (`task`: a reservation
and a settlement, two transactions) and under a task, a tenant-day and a
workflow-day budget at once (`all`: the same two, three lines each).

    python -m bench.budgets [N] [--backend sqlite,pg]

Prints the median and p90 per-step time of each and the difference to `plain`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.common import fresh_database, unavailable
from tether import Budget, Context, Cost, Tether

PRICE = Cost(usd=0.0001, tokens=10)
KINDS = ("plain", "charge", "task", "all")


async def measure(url: str, n: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    app = Tether(url)

    @app.workflow("metered")
    async def metered(ctx: Context, n: int, kind: str) -> None:
        def pay() -> None:
            if kind != "plain":
                ctx.charge(usd=PRICE.usd, tokens=PRICE.tokens)

        estimate = PRICE if kind in ("task", "all") else None
        for i in range(n):
            started = time.perf_counter()
            await ctx.step(f"pay{i}", pay, estimate=estimate)
            times[kind].append(time.perf_counter() - started)

    async with app.worker():
        for rounds in range(2):  # warm every kind, then measure
            for kind in KINDS:
                times[kind].clear()
                app.budgets.set_daily(Budget(usd=1e6) if kind == "all" else None)
                app.budgets.set_daily(
                    Budget(usd=1e6) if kind == "all" else None, workflow="metered"
                )
                budget = None if kind == "none" else Budget(usd=1e6, tokens=10**12)
                handle = await app.submit(
                    "metered", {"n": n if rounds else 20, "kind": kind}, spend_budget=budget
                )
                await handle.result(timeout=600)
    await app.close()
    return times


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", nargs="?", type=int, default=300)
    parser.add_argument("--backend", default="sqlite,pg")
    args = parser.parse_args()
    for backend in args.backend.split(","):
        why = await unavailable(backend)
        if why is not None:
            print(f"{backend}: not measured ({why})")
            continue
        with fresh_database(backend) as url:
            times = await measure(url, args.n)
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        p90 = {k: statistics.quantiles(v, n=10)[-1] * 1000 for k, v in times.items()}
        for kind in KINDS:
            extra = "" if kind == "plain" else f"  ({med[kind] - med['plain']:+.3f} ms)"
            print(
                f"{backend:6} {kind:6} median {med[kind]:.3f} ms  p90 {p90[kind]:.3f} ms"
                f" per step{extra}  ({args.n} steps)"
            )


if __name__ == "__main__":
    asyncio.run(main())
