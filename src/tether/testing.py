"""Test your workflows in milliseconds: a throwaway store, a clock you control, and
`run_until_idle`, which skips time forward to the next timer when nothing else is due
(and fires the cron schedules due at the clock's time, never skipping time to a tick:
move the clock past one with `env.clock.advance`).

    from tether.testing import TestEnvironment

    async def test_my_workflow():
        app = build_app()                      # your Tether app with its workflows
        async with TestEnvironment(app) as env:
            handle = await app.submit("onboard", {"user": "ada"})
            await env.run_until_idle()         # runs it, fires its timers
            assert (await handle.status()).status == "succeeded"

The environment swaps the app's store for an in-memory SQLite database (the same code
as production, no files) and its clock for a `ManualClock` starting at `start`. With
`in_memory=False` the app keeps its own store, so the same test runs on PostgreSQL too:

    app = Tether("postgresql://localhost/tether_test")   # an empty database
    async with TestEnvironment(app, in_memory=False) as env: ...
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from types import TracebackType

from tether.app import Tether
from tether.engine.worker import Worker
from tether.schedules.scheduler import Scheduler
from tether.store.sqlite import SQLiteStore


class ManualClock:
    """A clock that moves only when told to (`advance`, `set`)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()
        self._apps: list[Tether] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._counter), fut))
        await fut

    def next_sleeper(self) -> float | None:
        """When the earliest in-process `clock.sleep` ends, if any."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def set(self, when: float) -> None:
        """Move to `when` (never backwards), waking sleepers and due timers."""
        self._now = max(self._now, when)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)
        for app in self._apps:
            app.store.hub.notify_all_work()
            app.store.hub.notify_schedules()

    def advance(self, seconds: float) -> None:
        """Move forward by `seconds`."""
        self.set(self._now + seconds)


class TestEnvironment:
    """An app rewired for tests: a manual clock, one worker, and an in-memory store
    (or, with `in_memory=False`, the app's own store, which should be empty)."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: Tether,
        *,
        start: float | None = None,
        concurrency: int = 50,
        in_memory: bool = True,
    ) -> None:
        self.app = app
        self.clock = ManualClock(start)
        self.clock._apps.append(app)
        app.clock = self.clock
        if in_memory:
            app.store = SQLiteStore("sqlite://:memory:")
            app._opened = False
        self._concurrency = concurrency
        self.worker: Worker | None = None

    async def __aenter__(self) -> TestEnvironment:
        await self.app.open()
        self.worker = self.app.worker(self._concurrency, poll_interval=0.05, queues=self._queues())
        await self.worker.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.app.close()

    async def _fire_schedules(self) -> int:
        """Fire the schedules due at the clock's time now (time is never skipped to a
        tick: a schedule always has one more). The tasks created."""
        assert self.worker is not None
        created = 0
        for companion in self.worker.companions:
            if isinstance(companion, Scheduler):
                created += (await companion.run_once())[0]
        return created

    def _queues(self) -> list[str]:
        steps = {d.queue for d in self.app.step_defs.values() if d.queue is not None}
        return sorted({wf.queue for wf in self.app.workflows.definitions()} | steps | {"default"})

    async def run_until_idle(self, *, skip_time: bool = True, timeout: float = 30.0) -> None:
        """Run until nothing is runnable. With `skip_time`, jump the clock to the next
        timer, backoff or sleep whenever the system would otherwise just wait."""
        worker = self.worker
        assert worker is not None, "use `async with TestEnvironment(app)`"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        queues = self._queues()
        stalled = 0
        while True:
            if loop.time() > deadline:
                raise TimeoutError("run_until_idle: the system did not become idle")
            await asyncio.sleep(0.005)
            sleeper = self.clock.next_sleeper()
            if not worker.idle:
                # Busy, or every running task is in a clock.sleep (an inline backoff).
                stalled = stalled + 1 if sleeper is not None and worker.committer.idle else 0
                if skip_time and stalled > 3 and sleeper is not None:
                    self.clock.set(sleeper)
                    stalled = 0
                continue
            stalled = 0
            if await self._fire_schedules():
                continue
            due = await self.app.store.next_wake(queues)
            if due is not None and due <= self.clock.now():
                self.app.store.hub.notify_all_work()
                continue
            upcoming = [t for t in (due, sleeper) if t is not None]
            if skip_time and upcoming:
                self.clock.set(min(upcoming))
                continue
            return
