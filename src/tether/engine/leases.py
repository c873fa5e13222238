"""A worker's leases: the heartbeat that renews them all in one statement, and what a
heartbeat that fails means (ADRs 9 and 71).

- Renewed: each run whose task the statement names stays ours (and is cancelled if its
  cancellation was requested); a run whose task it does not name was taken over by
  another worker after our lease expired, and stops at once, writing nothing (its
  commits would be fenced off anyway).
- The database unreachable (`StoreUnavailable`): nothing is given up. No worker can
  take a task over while nobody reaches the database, so runs keep going (they wait for
  their commits); the heartbeat goes again the moment the store finds the database
  back, and the claim loop renews before it claims (`renew_first`), so a lease that ran
  out during the outage is kept when the task is still ours, and given up when another
  worker took it.
- Any other failure: a run whose lease may have expired is abandoned, since others may
  still reach the database and take it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Container, Mapping

from tether.clock import Clock
from tether.engine.run import TaskRun
from tether.engine.run.state import RunState
from tether.errors import StoreUnavailable
from tether.store.base import Store

log = logging.getLogger("tether.worker")

OUTAGE_RETRY = 1.0
"""Longest wait, in seconds, between a heartbeat's or claim's attempts while the
database is unreachable (they go again as soon as the store finds it back)."""


class Leases:
    """Renews the leases of a worker's runs (`runs`: task id -> run, the worker's own)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        worker_id: str,
        lease_ttl: float,
        runs: Mapping[str, TaskRun],
        concluding: Container[RunState],
    ) -> None:
        self._store = store
        self._clock = clock
        self._worker_id = worker_id
        self._ttl = lease_ttl
        self._runs = runs
        self._concluding = concluding
        """Runs whose outcome is with the committer: missing from a renewal, they just
        ended (their commit says whether they still held the task)."""
        self.renew_first = False
        """A heartbeat or claim failed: renew before the next claim, so that the worker
        never recovers a task of its own whose lease ran out meanwhile."""

    async def renew(self) -> None:
        """Extend every run's lease in one statement; stop the runs whose task is no
        longer ours, cancel those whose cancellation was requested."""
        loop = asyncio.get_running_loop()
        now, sent = self._clock.now(), loop.time()
        held = await self._store.heartbeat(self._worker_id, list(self._runs), now, now + self._ttl)
        self.renew_first = False
        for task_id, run in list(self._runs.items()):
            if task_id in held:
                run.lease_renewed = sent
                if held[task_id]:
                    run.cancel()
            elif run.lease_renewed < sent and run not in self._concluding:
                # Its claim had returned before this heartbeat was sent, yet it is no
                # longer ours: another worker took it over (our lease expired), or it
                # just ended. Stop at once, write nothing.
                log.error("task %s: lease lost to another worker; abandoning", task_id)
                run.release()

    async def loop(self) -> None:
        """Renew every `lease_ttl / 3` seconds, for ever."""
        interval = self._ttl / 3
        loop = asyncio.get_running_loop()
        pause = interval
        while True:
            await asyncio.sleep(pause)
            pause = interval
            if not self._runs:
                continue
            try:
                await self.renew()
            except StoreUnavailable:
                self.renew_first = True
                await self._store.availability.wait_reachable(OUTAGE_RETRY)
                pause = 0.05  # again at once once it is back, never in a tight loop
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
                self.renew_first = True
                self._abandon_expired(loop.time())

    def _abandon_expired(self, now: float) -> None:
        """Stop runs whose lease may have expired while heartbeats failed for a reason
        other than an unreachable database: another worker may already be running
        them, and a task runs in one place."""
        for task_id, run in list(self._runs.items()):
            if now - run.lease_renewed > self._ttl * 0.9:
                log.error(
                    "task %s: lease not renewed for %.1fs; abandoning",
                    task_id,
                    now - run.lease_renewed,
                )
                run.release()


async def pause_after_failure(
    store: Store, exc: Exception, backoff: float, stopping: asyncio.Event
) -> None:
    """A claim loop's pause after a failed attempt, cut short by `stopping`: while the
    database is unreachable, until the store finds it back (at most `OUTAGE_RETRY`
    seconds); after any other failure, `backoff` seconds."""
    if not isinstance(exc, StoreUnavailable):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), backoff)
        return
    await asyncio.sleep(min(backoff, OUTAGE_RETRY) / 4)  # never a busy loop
    waiters = {
        asyncio.ensure_future(store.availability.wait_reachable(OUTAGE_RETRY)),
        asyncio.ensure_future(stopping.wait()),
    }
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


__all__ = ["OUTAGE_RETRY", "Leases", "pause_after_failure"]
