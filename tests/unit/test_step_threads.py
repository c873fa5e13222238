"""`StepThreads`: the sync-step threads hand results, errors and context back intact."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from tether.engine.threads import StepThreads

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


async def test_results_errors_and_context_come_back() -> None:
    threads = StepThreads(4)
    try:
        request_id.set("r-1")
        main = threading.get_ident()

        def work(i: int, *, scale: int) -> tuple[int, str, bool]:
            return i * scale, request_id.get(), threading.get_ident() != main

        results = await asyncio.gather(
            *(threads.submit(work, (i,), {"scale": 3}) for i in range(200))
        )
        assert results == [(i * 3, "r-1", True) for i in range(200)]

        def boom() -> None:
            raise KeyError("missing")

        with pytest.raises(KeyError, match="missing"):
            await threads.submit(boom, (), {})
    finally:
        threads.shutdown()


async def test_never_more_threads_than_its_size() -> None:
    threads = StepThreads(3)
    running = 0
    peak = 0
    lock = threading.Lock()
    gate = threading.Event()
    full = asyncio.Event()
    loop = asyncio.get_running_loop()

    def hold() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            if running == 3:
                loop.call_soon_threadsafe(full.set)
        gate.wait(10)
        with lock:
            running -= 1

    try:
        futures = [threads.submit(hold, (), {}) for _ in range(10)]
        await asyncio.wait_for(full.wait(), 5)
        gate.set()
        await asyncio.gather(*futures)
        assert peak == 3
    finally:
        threads.shutdown()


async def test_a_cancelled_wait_drops_the_result_and_shutdown_cancels_queued_steps() -> None:
    threads = StepThreads(1)
    gate = threading.Event()
    first = threads.submit(gate.wait, (10,), {})
    queued = threads.submit(lambda: "never", (), {})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(first), 0.05)
    first.cancel()
    threads.shutdown()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await queued
    with pytest.raises(RuntimeError, match="shut down"):
        threads.submit(lambda: None, (), {})


async def test_a_step_raising_stopiteration_fails_alone() -> None:
    """StopIteration cannot be set on a future; it must not strand its neighbours."""
    threads = StepThreads(2)
    try:

        def stop() -> None:
            raise StopIteration

        results = await asyncio.wait_for(
            asyncio.gather(
                *(threads.submit(stop if i == 1 else (lambda i=i: i), (), {}) for i in range(4)),
                return_exceptions=True,
            ),
            5,
        )
        assert [r for i, r in enumerate(results) if i != 1] == [0, 2, 3]
        assert isinstance(results[1], RuntimeError) and "StopIteration" in str(results[1])
    finally:
        threads.shutdown()
