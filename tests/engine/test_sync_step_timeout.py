"""A sync step that times out never overlaps its own retry (ADR 66): its thread cannot be
interrupted, so the next attempt starts only once that thread has returned; a thread
still running another `timeout` later is left behind and the step fails for good
(`SyncStepStuck`), never retried beside it. Real step threads, counted while they run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tether import Context, RetryPolicy, TaskFailedError, Tether

FAST_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=0)


class Overlap:
    """Counts executions of a step function, and the most that ran at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.starts = 0

    def enter(self) -> int:
        with self._lock:
            self.running += 1
            self.starts += 1
            self.peak = max(self.peak, self.running)
            return self.starts

    def leave(self) -> None:
        with self._lock:
            self.running -= 1


async def test_the_retry_of_a_timed_out_sync_step_waits_for_its_thread(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    count = Overlap()

    def slow_once() -> str:
        attempt = count.enter()
        try:
            if attempt == 1:
                # Past the 0.5 s timeout, well within the 0.5 s after it.
                threading.Event().wait(0.7)
            return f"attempt {attempt}"
        finally:
            count.leave()

    @app.workflow("sync_timeout")
    async def sync_timeout(ctx: Context) -> str:
        return await ctx.step("slow", slow_once, retry=FAST_RETRY, timeout=0.5)

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("sync_timeout")
        started = time.monotonic()
        assert await handle.result(timeout=20) == "attempt 2"
    assert count.starts == 2 and count.peak == 1, "two attempts of one step overlapped"
    assert time.monotonic() - started >= 0.7
    (step,) = await app.steps(handle.id)
    assert step.attempts == 2


async def test_a_sync_step_stuck_past_its_grace_fails_for_good(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    count = Overlap()
    release = threading.Event()

    def stuck() -> None:
        count.enter()
        try:
            release.wait(30)
        finally:
            count.leave()

    @app.workflow("stuck")
    async def stuck_wf(ctx: Context) -> None:
        await ctx.step("stuck", stuck, retry=FAST_RETRY, timeout=0.2)

    try:
        async with app.worker(poll_interval=0.05):
            handle = await app.submit("stuck")
            with pytest.raises(TaskFailedError) as caught:
                await handle.result(timeout=20)
            assert caught.value.error_type == "SyncStepStuck"
            (step,) = await app.steps(handle.id)
            assert step.error is not None and step.error.type == "SyncStepStuck"
            assert step.error.permanent and step.attempts == 1
            assert count.starts == 1, "a retry started beside the stuck thread"
    finally:
        release.set()
