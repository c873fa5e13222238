"""Workflows the API tests run."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from tether import Context, Cost, Permanent, RetryPolicy, Tether, Transient

UNDONE: list[str] = []
"""What the `saga` workflow's compensation undid, in order (the server runs in-process)."""
RUNS: Counter[str] = Counter()
"""Executions of the `pay` workflow's steps, by step name (the dead-letter tests)."""
BROKEN: set[str] = set()
"""Step names of `pay` that fail (permanently) while named here."""
CRM_DOWN: set[str] = {"down"}
"""The `crm` workflow's step fails (transiently) while this holds "down" (the breaker
tests); the others leave it alone."""


def build_app(database_url: str, settings: Any = None) -> Tether:
    """A Tether app with the test workflows registered."""
    app = Tether(database_url, settings=settings)

    @app.workflow("echo")
    async def echo(ctx: Context, x: int) -> dict[str, int]:
        doubled = await ctx.step("double", _double, x)
        return {"x": x, "doubled": doubled}

    @app.workflow("gate")
    async def gate(ctx: Context, label: str = "") -> dict[str, Any]:
        before = await ctx.step("before", _tag, label)
        payload = await ctx.wait_for_signal("go")
        after = await ctx.step("after", _tag, label)
        return {"before": before, "after": after, "payload": payload}

    @app.step
    def release(held: str) -> None:
        UNDONE.append(held)

    @app.workflow("saga")
    async def saga(ctx: Context, label: str = "") -> str:
        """Holds `label` (undone by `release`), then fails if the `go` signal says so."""
        await ctx.step("hold", _tag, label, compensate=release)
        if await ctx.wait_for_signal("go") == "fail":
            await ctx.step("write", _refuse)
        return label

    @app.workflow("triage", version=1)
    async def triage_v1(ctx: Context, n: int = 0) -> str:
        return "v1"

    @app.workflow("triage", version=2)
    async def triage_v2(ctx: Context, n: int = 0) -> str:
        """The canary: refuses odd tickets."""
        if n % 2:
            await ctx.step("refuse", _refuse)
        return "v2"

    @app.workflow("fanout")
    async def fanout(ctx: Context, n: int = 2) -> list[Any]:
        """Starts up to three `echo` children and gathers them."""
        handles = [ctx.start_child("echo", {"x": i}) for i in range(max(0, min(n, 3)))]
        return list(await asyncio.gather(*handles))

    @app.workflow("anything")
    async def anything(ctx: Context, value: Any = None) -> Any:
        """Takes any JSON input (schemathesis submits what it generates)."""
        return value

    @app.step(integration="crm", retry=RetryPolicy(max_attempts=1))
    def crm_save(who: str) -> str:
        if "down" in CRM_DOWN:
            raise Transient("the CRM is down")
        return f"saved {who}"

    @app.workflow("crm", retry=RetryPolicy(max_attempts=1))
    async def crm(ctx: Context, who: str = "") -> str:
        """One call of the `crm` integration (behind a breaker when one is configured)."""
        return await crm_save(who)

    @app.workflow("pay")
    async def pay(ctx: Context, order: int, at: str = "charge") -> str:
        await ctx.step("prepare", _pay_step, "prepare", order)
        return await ctx.step(at, _pay_step, at, order)

    @app.workflow("metered")
    async def metered(ctx: Context, steps: int = 3) -> int:
        """Steps that declare and spend $0.04 and 100 tokens each (the spend tests)."""
        for i in range(steps):

            def pay(i: int = i) -> int:
                ctx.charge(usd=0.04, tokens=100)
                return i

            await ctx.step(f"pay{i}", pay, estimate=Cost(usd=0.04, tokens=100))
        return steps

    return app


def _pay_step(name: str, order: int) -> str:
    RUNS[name] += 1
    if name in BROKEN:
        raise Permanent(f"card declined for order {order} (ref ord_{order}x)")
    return f"{name}:{order}"


async def _double(x: int) -> int:
    return 2 * x


async def _tag(label: str) -> str:
    return f"tag:{label}"


def _refuse() -> None:
    raise Permanent("the CRM refused the write")
