"""The benchmark workflows, identical to `../shared/peerbench/bench_tether.py`.

Kept in a module of their own so that worker subprocesses (W5) register exactly the same
workflows as the benchmarking process.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from tether import Context, Tether


@dataclass
class Counter:
    """Completions counted in memory inside the step (like the peers' Redis counter)."""

    n: int = 0
    target: int = 0
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self, target: int) -> None:
        self.n, self.target = 0, target
        self.event = asyncio.Event()


def build_app(url: str, counter: Counter | None = None) -> Tether:
    """A Tether app on `url` with the workloads' workflows registered."""
    app = Tether(database_url=url)
    done = counter or Counter()
    loop_holder: dict[str, asyncio.AbstractEventLoop] = {}
    lock = threading.Lock()

    def count() -> int:
        # A sync step (runs in the worker's thread pool, as in the peers' harness).
        with lock:
            done.n += 1
            n = done.n
        if n == done.target:
            loop = loop_holder.get("loop")
            if loop is not None:
                loop.call_soon_threadsafe(done.event.set)
        return n

    def trivial(i: int) -> int:
        return i

    async def atrivial(i: int) -> int:
        return i

    async def io() -> None:
        await asyncio.sleep(0.05)

    @app.workflow("noop", version=1)
    async def noop(ctx: Context, i: int) -> int:
        loop_holder.setdefault("loop", asyncio.get_running_loop())
        result: int = await ctx.step("count", count)
        return result

    @app.workflow("steps", version=1)
    async def steps(ctx: Context, n: int) -> int:
        for i in range(n):
            await ctx.step(f"s{i}", trivial, i)
        return n

    @app.workflow("asteps", version=1)
    async def asteps(ctx: Context, n: int) -> int:
        for i in range(n):
            await ctx.step(f"s{i}", atrivial, i)
        return n

    @app.workflow("agentlike", version=1)
    async def agentlike(ctx: Context, i: int) -> int:
        for k in range(3):
            await ctx.step(f"io{k}", io)
        return i

    @app.workflow("ping", version=1)
    async def ping(ctx: Context, i: int) -> int:
        return i

    @app.workflow("waiter", version=1)
    async def waiter(ctx: Context, i: int) -> int:
        await ctx.wait_for_signal("go")
        return i

    return app
