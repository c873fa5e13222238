"""Test app for the multi-process tests: workflows whose steps record every execution
in a side file (one JSON line per event, appended and fsynced, so it survives SIGKILL).

Each line: {"event": "start"|"end", "task", "seq", "step", "key", "attempt", "pid",
"worker", "t"} where `t` is `time.monotonic()` (system-wide on Linux, so intervals from
different processes compare) and `worker` comes from env TETHER_TEST_WORKER.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

from pydantic import BaseModel

from tether import Concurrency, Context, Tether, current_step

app = Tether()


def record(log: str, event: str, **extra: Any) -> None:
    info = current_step()
    assert info is not None, "record() runs inside steps only"
    line = {
        "event": event,
        "task": info.task_id,
        "seq": info.seq,
        "step": info.name,
        "key": info.idempotency_key,
        "attempt": info.attempt,
        "pid": os.getpid(),
        "worker": os.environ.get("TETHER_TEST_WORKER"),
        "t": time.monotonic(),
        **extra,
    }
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_log(log: str) -> list[dict[str, Any]]:
    """Every complete line of a side file (a line cut by SIGKILL is skipped)."""
    try:
        with open(log) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    out = []
    for raw in text.splitlines():
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return out


async def work(log: str, delay: float) -> int:
    """A step: record start, take `delay` seconds, record end."""
    record(log, "start")
    await asyncio.sleep(delay)
    record(log, "end")
    info = current_step()
    return info.seq if info else -1


@app.workflow("ten_steps")
async def ten_steps(ctx: Context, log: str, delay: float = 0.2) -> list[int]:
    """Ten sequential steps (the crash test)."""
    done = []
    for i in range(10):
        done.append(await ctx.step(f"step-{i + 1}", work, log, delay))
    return done


@app.workflow("one_per_customer", concurrency=Concurrency(max=1, key=lambda i: i["customer"]))
async def one_per_customer(ctx: Context, log: str, customer: str, delay: float = 0.1) -> int:
    """One step at a time per customer, across every worker (the concurrency test)."""
    return await ctx.step("work", work, log, delay)


@app.workflow("few_steps")
async def few_steps(ctx: Context, log: str, delay: float = 0.02, steps: int = 3) -> int:
    """A few short steps (the multi-worker test)."""
    for i in range(steps):
        await ctx.step(f"s{i + 1}", work, log, delay)
    return steps


async def long_then_quick(log: str, first_run_seconds: float, task_attempt: int) -> str:
    """Slow on the task's first claim (to be interrupted), quick after."""
    record(log, "start")
    await asyncio.sleep(first_run_seconds if task_attempt == 1 else 0.05)
    record(log, "end")
    return "done"


@app.workflow("slow_middle")
async def slow_middle(ctx: Context, log: str, first_run_seconds: float = 60.0) -> str:
    """step a (quick) → step b (long on the first claim) → step c (quick)."""
    await ctx.step("a", work, log, 0.01)
    await ctx.step("b", long_then_quick, log, first_run_seconds, ctx.attempt)
    await ctx.step("c", work, log, 0.01)
    return "ok"


def blocking_sleep(log: str, seconds: float) -> str:
    """A sync step (runs in a worker thread) that ignores cancellation."""
    record(log, "start")
    time.sleep(seconds)
    record(log, "end")
    return "slept"


@app.workflow("sync_slow")
async def sync_slow(ctx: Context, log: str, seconds: float = 30.0) -> str:
    """One long sync step (SIGTERM must not wait for the thread)."""
    return await ctx.step("block", blocking_sleep, log, seconds if ctx.attempt == 1 else 0.01)


def kill_own_worker(log: str) -> str:
    """A step that SIGKILLs the worker process running it: a crash on every run."""
    record(log, "start")
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"


@app.workflow("kills_its_worker")
async def kills_its_worker(ctx: Context, log: str) -> str:
    """One step that kills its worker every time (the lease-expiry cap test)."""
    return await ctx.step("kill", kill_own_worker, log)


class Greeting(BaseModel):
    name: str
    times: int = 1


@app.workflow("greet")
async def greet(ctx: Context, req: Greeting) -> str:
    """A one-step workflow with a typed input (CLI tests)."""
    return await ctx.step("say", lambda: " ".join([f"hello {req.name}"] * req.times))


@app.workflow("wait_signal")
async def wait_signal(ctx: Context, name: str = "go") -> Any:
    """Waits for a signal and returns its payload (CLI signal/cancel tests)."""
    return await ctx.wait_for_signal(name)


@app.workflow("boom")
async def boom(ctx: Context) -> None:
    """Fails permanently in its first step (watch exit status)."""

    def explode() -> None:
        raise ValueError("kaboom")

    await ctx.step("explode", explode)


not_an_app = object()


@app.step
async def unbook(booking: dict[str, Any]) -> None:
    """The compensation of `book`: slow on worker w1 for booking 2 (to be killed)."""
    record(booking["log"], "start", undoes=booking["n"])
    slow = booking["n"] == 2 and os.environ.get("TETHER_TEST_WORKER") == "w1"
    await asyncio.sleep(60 if slow else 0.02)
    record(booking["log"], "end", undoes=booking["n"])


async def book(log: str, n: int) -> dict[str, Any]:
    """A booking step; the fourth is refused for good."""
    record(log, "start")
    if n == 4:
        raise ValueError("booking 4 refused")
    record(log, "end")
    return {"log": log, "n": n}


@app.workflow("saga")
async def saga(ctx: Context, log: str) -> None:
    """Four bookings, each undone by `unbook`; the fourth fails (the saga crash test)."""
    for n in range(1, 5):
        await ctx.step(f"book-{n}", book, log, n, compensate=unbook)


@app.workflow("triage", version=1)
async def triage_v1(ctx: Context) -> str:
    """Two versions of one workflow (the rollout CLI tests)."""
    return "v1"


@app.workflow("triage", version=2)
async def triage_v2(ctx: Context) -> str:
    return "v2"


def child_effect(log: str, index: int, kill_marker: str | None) -> int:
    """A child's step: record the run; with `kill_marker`, the first run anywhere
    SIGKILLs its worker (the marker file, written first, says it happened)."""
    record(log, "start", index=index)
    if kill_marker is not None and not os.path.exists(kill_marker):
        fd = os.open(kill_marker, os.O_WRONLY | os.O_CREAT, 0o644)
        os.fsync(fd)
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
    return index


@app.workflow("child_effect")
async def child_effect_wf(
    ctx: Context, log: str, index: int, kill_marker: str | None = None
) -> int:
    """A child of `fan_children`: one recorded step."""
    return await ctx.step("effect", child_effect, log, index, kill_marker)


@app.workflow("fan_children")
async def fan_children(ctx: Context, log: str, count: int, kill_marker: str | None = None) -> int:
    """Start `count` children in one go and gather them; the first one's step kills the
    worker while the others are still being started and recorded (the crash test)."""
    handles = [
        ctx.start_child(
            "child_effect",
            {"log": log, "index": i, "kill_marker": kill_marker if i == 0 else None},
        )
        for i in range(count)
    ]
    return sum(await asyncio.gather(*handles))
