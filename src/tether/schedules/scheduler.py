"""`Scheduler`: fires due schedules, in every worker and server (ADR 77).

One loop per process (a companion of each worker, or alone in an API-only server). It
reads the agenda of the schedules whose workflows this app registers, fires each due
one (the ticks `tether.schedules.ticks.plan` picks, as tasks whose idempotency key is
the tick), and sleeps until the next tick, the poll interval at most (to see schedules
other processes made), or until this process changes a schedule. Every scheduler of a
deployment races on each tick; the store lets one firing per revision apply, so the
tick starts one task however many schedulers run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from tether.clock import Clock, wait_event
from tether.errors import IdempotencyConflict, InvalidSchedule, TetherError
from tether.models.schedules import Schedule
from tether.schedules.cron import Cron
from tether.schedules.ticks import plan, tick_key
from tether.store.availability import failure_level
from tether.store.base import NewTask, Store
from tether.store.schedules import Firing

log = logging.getLogger("tether.schedules")

AGENDA_BATCH = 100
"""Due schedules one agenda read returns at most (a pass reads again while full)."""


class ScheduleSource(Protocol):
    """What a scheduler needs of the application (the `Tether` app is one)."""

    def schedule_workflows(self) -> list[str]:
        """The workflows whose schedules this process fires: those it registers."""
        ...

    def declared_schedules(self, now: float) -> list[Schedule]:
        """The schedules declared in code (`@app.schedule`), as rows to store."""
        ...

    def schedule_task(self, schedule: Schedule, tick: float | None, key: str) -> NewTask:
        """The task one tick of `schedule` starts (`TetherError` when its input no
        longer fits the workflow)."""
        ...


@dataclass(frozen=True)
class SchedulerOptions:
    """How a scheduler paces itself."""

    poll_interval: float = 1.0
    """Seconds between agenda reads at most (schedules made by other processes are
    seen within this)."""


class Scheduler:
    """Fires due schedules for one process; `async with`, or `start()`/`stop()`."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        source: ScheduleSource,
        options: SchedulerOptions | None = None,
        *,
        open: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.source = source
        self.options = options or SchedulerOptions()
        self._open = open
        self._loop: asyncio.Task[None] | None = None
        self.fired = 0
        """Tasks this scheduler created (tests and the bench read it)."""

    # a worker's companion (`tether.engine.worker.Companion`) --------------------------
    async def start(self) -> None:
        """Store the schedules declared in code, then run the loop in the background."""
        if self._loop is not None and not self._loop.done():
            return
        if self._open is not None:
            await self._open()
        await self.declare()
        self._loop = asyncio.create_task(self._run(), name="tether-scheduler")

    async def stop(self) -> None:
        """Stop the loop (a firing under way is rolled back or committed whole)."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def declare(self) -> None:
        """Store (or update) the schedules declared in code."""
        declared = self.source.declared_schedules(self.clock.now())
        if declared:
            await self.store.declare_schedules(declared, self.clock.now())

    # firing ---------------------------------------------------------------------------
    async def run_once(self) -> tuple[int, float | None]:
        """Fire every schedule due now; the tasks created, and the next tick after (of
        every schedule this scheduler fires, the ones it just moved on included)."""
        created, soonest = 0, None
        while True:
            now = self.clock.now()
            workflows = self.source.schedule_workflows()
            agenda = await self.store.schedule_agenda(now, workflows, AGENDA_BATCH)
            for schedule in agenda.due:
                made, next_at = await self._fire(schedule, now)
                created += made
                soonest = _earliest(soonest, next_at)
            if len(agenda.due) < AGENDA_BATCH:
                self.fired += created
                return created, _earliest(soonest, agenda.next_at)

    async def _fire(self, schedule: Schedule, now: float) -> tuple[int, float | None]:
        """Fire `schedule`'s due ticks: the tasks created, and its next tick (also when
        another scheduler fired them first: it planned the same)."""
        assert schedule.next_at is not None  # the agenda holds active schedules only
        try:
            cron = Cron.of(schedule.cron, schedule.timezone)
        except InvalidSchedule as exc:  # stored by an older version that accepted it
            log.error("schedule %s/%s cannot fire: %s", schedule.tenant, schedule.name, exc)
            return 0, None
        chosen = plan(cron, schedule.next_at, now, schedule.missed, schedule.max_missed)
        if chosen.skipped:
            log.info("schedule %s/%s: missed ticks skipped", schedule.tenant, schedule.name)
        firing = Firing(schedule.tenant, schedule.name, schedule.revision, chosen.next_at)
        try:
            firing.tasks = [
                self.source.schedule_task(schedule, t, tick_key(schedule.name, t))
                for t in chosen.ticks
            ]
            firing.last_tick_at = chosen.ticks[-1] if chosen.ticks else None
        except TetherError as exc:  # the input no longer fits: move on, say why
            firing.error = f"{type(exc).__name__}: {exc}"
            log.warning("schedule %s/%s: %s", schedule.tenant, schedule.name, firing.error)
        try:
            done = await self.store.fire_schedule(firing, now)
        except IdempotencyConflict as exc:  # a key reused by another submission
            firing.tasks, firing.error = [], f"{type(exc).__name__}: {exc}"
            done = await self.store.fire_schedule(firing, now)
        return sum(1 for s in done or () if s.created), firing.next_at

    async def _run(self) -> None:
        hub = self.store.hub
        poll = self.options.poll_interval
        backoff = poll
        while True:
            hub.schedules_changed.clear()
            try:
                _, upcoming = await self.run_once()
                backoff = poll
            except Exception as exc:  # the database is away: try again, more slowly
                log.log(
                    failure_level(exc), "scheduler pass failed (%s); again in %.1fs", exc, backoff
                )
                await wait_event(hub.schedules_changed, backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            # Real time, not the clock's: a test's manual clock wakes this loop with
            # `notify_schedules` when it moves (and `run_until_idle` fires by itself).
            delay = poll if upcoming is None else min(poll, upcoming - self.clock.now())
            await wait_event(hub.schedules_changed, max(0.0, delay))


def _earliest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)
