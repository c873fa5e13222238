"""Test app for the budget tests across processes (tests/processes/test_budget_fleet.py):
a workflow whose steps declare and spend $0.05 each under one daily budget of $1.00,
recording each spend in a side file (`crashy.record`: one fsynced JSON line per event,
with the worker's id and a system-wide monotonic time) before they report it."""

from __future__ import annotations

import asyncio

from apps.crashy import record
from tether import Budget, Context, Cost, Tether

app = Tether()

PRICE = Cost(usd=0.05)
DAILY = Budget(usd=1.00, on_exhausted="fail")
"""Twenty steps' worth: the workflow-day line every task of `spend` books on."""
ASKING = Budget(usd=1.00)
"""The same for `spend_asking`, whose steps wait for a raise when it is spent."""


@app.workflow("spend", daily_budget=DAILY)
async def spend(ctx: Context, log: str, steps: int = 3, seconds: float = 0.3) -> int:
    return await pay_steps(ctx, log, steps, seconds)


@app.workflow("spend_asking", daily_budget=ASKING)
async def spend_asking(ctx: Context, log: str, steps: int = 3, seconds: float = 0.3) -> int:
    return await pay_steps(ctx, log, steps, seconds)


async def pay_steps(ctx: Context, log: str, steps: int, seconds: float) -> int:
    for i in range(steps):

        async def pay(i: int = i) -> int:
            record(log, "start", usd=PRICE.usd)
            await asyncio.sleep(seconds)  # steps of many tasks overlap, across workers
            record(log, "spent", usd=PRICE.usd)  # the side effect: money gone
            ctx.charge(usd=PRICE.usd)
            return i

        await ctx.step(f"pay{i}", pay, estimate=PRICE)
    return steps
