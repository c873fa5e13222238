"""`Worker`: claims tasks in batches and runs many of them on one event loop.

- Claims up to the free concurrency in one statement, woken by new-work notifications
  (in-process, or PostgreSQL NOTIFY) with polling as the fallback. A slot frees as soon
  as a run hands its outcome to the committer (ADR 46).
- Eager dispatch: tasks submitted in this process arrive already claimed while slots
  are free (`reserve` / `adopt`, ADR 47).
- Heartbeats extend every lease the worker holds in one statement per interval; the
  same statement reports cancellation requests.
- The database unreachable (`StoreUnavailable`): runs keep their tasks and wait for
  their commits; the heartbeat and the claim loop try again the moment the store finds
  it back, and the leases are renewed before anything is claimed, so a task whose lease
  ran out meanwhile but is still ours is kept, while one another worker took over is
  given up, as fencing says (ADR 71).
- Shutdown: stop claiming, let running tasks finish for `grace` seconds, then hand the
  rest back to the queue; they resume from their step logs elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tether.clock import SystemClock
from tether.engine import gc_threshold
from tether.engine.committer import Committer
from tether.engine.leases import Leases, pause_after_failure
from tether.engine.presence import presence_loop, record_presence
from tether.engine.registry import WorkflowVersion
from tether.engine.retention import retention_loop
from tether.engine.run import HOLD_LIMIT, TaskRun
from tether.engine.run.log import RunLog
from tether.engine.run.state import RunState
from tether.engine.runtime import Runtime
from tether.engine.threads import StepThreads
from tether.errors import StoreUnavailable, UnknownWorkflow
from tether.ids import new_id
from tether.store.availability import failure_level
from tether.store.base import Claimed, Release, WorkerPresence

log = logging.getLogger("tether.worker")

CLAIM_GATHER = 0.001
"""Seconds a busy worker waits for more slots to free before claiming for the few free."""

HOLD_EARLY = 0.001
"""Seconds before its due time at which a held result counts as due (timer slack)."""

LOCAL_WAKE_HORIZON = 60.0
"""Seconds ahead within which a worker schedules its own wake-up for a suspended task."""


class Companion(Protocol):
    """A service that runs alongside a worker, started and stopped with it (the webhook
    dispatcher is one: the engine does not know what it does)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"


class Worker:
    """Runs tasks from `queues` with at most `concurrency` in flight, for `runtime`
    (its store, clock, workflows and policies: `tether.engine.runtime`)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        concurrency: int = 100,
        queues: list[str] | None = None,
        worker_id: str | None = None,
        lease_ttl: float = 30.0,
        poll_interval: float = 0.5,
        grace: float = 10.0,
        sync_threads: int = 32,
        claim_batch: int = 200,
        retention: float | None = None,
        dlq_retention: float | None = None,
        eager: bool = True,
        gc_threshold: int = 10_000,
        max_lease_expiries: int = 0,
        companions: Sequence[Companion] = (),
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.runtime = runtime
        self.concurrency = concurrency
        self.queues = queues or ["default"]
        self.id = worker_id or default_worker_id()
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        self.grace = grace
        self.claim_batch = claim_batch
        self.retention = retention
        """Purge ended tasks older than this many seconds (None: never, from this worker)."""
        self.dlq_retention = dlq_retention
        """With `retention`: purge dead-letter groups quiet for this many seconds."""
        self.eager = eager
        """Take tasks submitted in this process directly, while slots are free (ADR 47)."""
        self.gc_threshold = gc_threshold
        """First-generation GC threshold while this worker runs (0: leave the GC alone;
        `tether.engine.gc_threshold`, ADR 49)."""
        self.max_lease_expiries = max_lease_expiries
        """A task whose lease expires this many times in a row (no step recorded in
        between) is failed by this worker's claim instead of run again (0: no limit)."""
        self.companions = list(companions)
        """Services started after this worker and stopped before it stops."""
        self._gc_held = False
        self._unrunnable: set[WorkflowVersion] = set()
        """(workflow, version) pairs a claim returned but the runtime could not look up:
        left out of later claims, so a handed-back task is not claimed here again."""
        self._reserved = 0
        self.committer = Committer(runtime.store, self.id, runtime.clock)
        self._threads = StepThreads(sync_threads)
        self._runs: dict[str, TaskRun] = {}
        self._claiming = False
        self._concluding: set[RunState] = set()
        """Runs whose outcome is decided and handed to the committer: they hold no slot
        (their user code is done), only a lease until the outcome commits (ADR 46)."""
        self.leases = Leases(
            runtime.store, runtime.clock, self.id, lease_ttl, self._runs, self._concluding
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._holding: dict[RunLog, float] = {}
        """Runs holding step results, with when to release them (in that order)."""
        self._hold_timer: asyncio.TimerHandle | None = None
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._retention: asyncio.Task[None] | None = None
        self._presence: asyncio.Task[None] | None = None
        self._started_at = 0.0
        self.completed = 0

    # public life cycle ----------------------------------------------------------------
    async def start(self) -> None:
        await self.runtime.open()
        if self.gc_threshold and not self._gc_held:
            gc_threshold.hold(self.gc_threshold)
            self._gc_held = True
        self.committer.start()
        self._started_at = self.runtime.clock.now()
        store, clock = self.runtime.store, self.runtime.clock
        await record_presence(store, clock, self.presence)
        self._presence = asyncio.create_task(
            presence_loop(store, clock, self.presence), name="tether-presence"
        )
        self._main = asyncio.create_task(self._claim_loop(), name=f"tether-worker-{self.id}")
        self._heartbeat = asyncio.create_task(self.leases.loop(), name="tether-heartbeat")
        if self.retention is not None:
            self._retention = asyncio.create_task(
                retention_loop(
                    self.runtime.store, self.runtime.clock, self.retention, self.dlq_retention
                ),
                name="tether-retention",
            )
        for companion in self.companions:
            await companion.start()
        log.info("worker %s started on queues %s", self.id, ",".join(self.queues))

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming; wait up to `grace` seconds, then hand back what still runs."""
        try:
            for companion in self.companions:
                await companion.stop()
            await self._shut_down(grace)
        finally:
            if self._gc_held:
                gc_threshold.release()
                self._gc_held = False
        log.info("worker %s stopped", self.id)

    async def _shut_down(self, grace: float | None) -> None:
        # An unreachable database must not hold the stop for ever: commits give up once
        # the grace is over (the tasks' leases expire; other workers resume them).
        self.committer.wind_down(self.grace if grace is None else grace)
        self._stopping.set()
        self._wake_claim_loop()
        if self._main is not None:
            await self._main
        pending = list(self._tasks.values())
        if pending:
            await asyncio.wait(pending, timeout=self.grace if grace is None else grace)
        for task_id, run in list(self._runs.items()):
            run.release()
            self.committer.submit(Release(task_id, run.task.attempt))
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()))
        for loop_task in (self._heartbeat, self._retention, self._presence):
            if loop_task is not None:
                loop_task.cancel()
                await asyncio.gather(loop_task, return_exceptions=True)
        try:
            await self.runtime.store.worker_gone(self.id)
        except Exception as exc:  # its record goes stale by itself
            log.debug("removing the presence of worker %s failed: %s", self.id, exc)
        # Every run has ended: what a run still holds (one that lost its lease) is
        # never to be committed, here or by a later start of this worker.
        self._holding.clear()
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        await self.committer.close()
        self._threads.shutdown()

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def idle(self) -> bool:
        """No task runs here, no claim is under way and nothing waits to be committed."""
        return not self._runs and not self._claiming and self.committer.idle

    @property
    def active(self) -> int:
        """Tasks running on this worker now (at most `concurrency`; runs whose outcome
        is only waiting to be committed are not counted)."""
        # Concluding runs give their slot back, but at most `concurrency` of them: when
        # commits stall, claiming must stall too (at most 2 x concurrency leases).
        return len(self._runs) - min(len(self._concluding), self.concurrency)

    def presence(self, now: float) -> WorkerPresence:
        """This worker as its presence record says (what it claims; ADR 64)."""
        return WorkerPresence(self.id, list(self.queues), self._claimable(), self._started_at, now)

    def cancel_local(self, task_id: str) -> bool:
        """Cancel a task if it runs here (fast path for in-process cancel)."""
        run = self._runs.get(task_id)
        if run is None:
            return False
        run.cancel()
        return True

    def wake_at(self, when: float, queue: str) -> None:
        """Claim again at `when` (a timer or backoff of a task this worker suspended),
        instead of up to one poll interval later. Far timers are left to polling, so
        a million sleeping tasks cost no memory here."""
        if not isinstance(self.runtime.clock, SystemClock):
            return
        delay = when - self.runtime.clock.now()
        if delay <= LOCAL_WAKE_HORIZON:
            loop = asyncio.get_running_loop()
            loop.call_later(max(0.0, delay), self.runtime.store.hub.notify_work, queue)

    def run_sync(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> asyncio.Future[Any]:
        """Run a sync step function in the worker's thread pool, with its context."""
        return self._threads.submit(fn, args, kwargs)

    # loops ----------------------------------------------------------------------------
    def _wake_claim_loop(self) -> None:
        self._slot_freed.set()

    async def _claim_loop(self) -> None:
        hub = self.runtime.store.hub
        events = [hub.work_event(q) for q in self.queues]
        backoff = 0.1
        # Under load, wait until a quarter of the slots are free before claiming again
        # (one claim of 25 costs what one claim of 1 costs), but never longer than
        # CLAIM_GATHER: a few free slots must not idle until the next wave of ends.
        # Idle, claim at once.
        low_water = max(1, min(self.claim_batch, self.concurrency) // 4)
        loop = asyncio.get_running_loop()
        gather_until: float | None = None
        while not self._stopping.is_set():
            busy = self.active + self._reserved
            free = self.concurrency - busy
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            if busy and free < low_water:
                if gather_until is None:
                    gather_until = loop.time() + CLAIM_GATHER
                if loop.time() < gather_until:
                    self._slot_freed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._slot_freed.wait(), gather_until - loop.time())
                    continue
            gather_until = None
            for event in events:
                event.clear()
            # Not idle while claiming: what this claim takes is not in _runs yet.
            self._claiming = True
            try:
                if self.leases.renew_first and self._runs:
                    await self.leases.renew()
                now = self.runtime.clock.now()
                claimed = await self.runtime.store.claim(
                    self.id,
                    self.queues,
                    min(free, self.claim_batch),
                    now,
                    now + self.lease_ttl,
                    self._claimable(),
                    self.max_lease_expiries,
                )
                backoff = 0.1
            except Exception as exc:
                self._claiming = False
                self.leases.renew_first = True
                log.log(failure_level(exc), "claim failed (%s); retrying in %.1fs", exc, backoff)
                await pause_after_failure(self.runtime.store, exc, backoff, self._stopping)
                backoff = min(backoff * 2, 5.0)
                continue
            returned = asyncio.get_running_loop().time()  # the claims are committed
            for item in claimed:
                self._start(item, returned)
            self._claiming = False
            if len(claimed) >= min(free, self.claim_batch):
                continue  # more may be waiting: claim again at once
            await self._wait_for_work(events)

    def _claimable(self) -> list[WorkflowVersion]:
        """The (workflow, version) pairs this worker claims: what the runtime registers."""
        pairs = self.runtime.workflow_versions()
        if self._unrunnable:
            pairs = [p for p in pairs if p not in self._unrunnable]
        return pairs

    async def _wait_for_work(self, events: list[asyncio.Event]) -> None:
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        self._slot_freed.clear()
        waiters.append(asyncio.ensure_future(self._stopping.wait()))
        try:
            await asyncio.wait(
                waiters, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in waiters:
                w.cancel()

    async def _sleep_or_stop(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # running one task -------------------------------------------------------------------
    def _start(self, claimed: Claimed, claimed_at: float) -> None:
        task = claimed.task
        try:
            wf = self.runtime.registry_lookup(task.workflow, task.workflow_version)
        except UnknownWorkflow as exc:
            # Claims name our (workflow, version) pairs, so this is a safety net: hand it
            # back for a worker that has it (a rolling deploy), never fail it for our
            # ignorance, and never claim that pair again here (no claim-release loop).
            pair = (task.workflow, task.workflow_version)
            if pair not in self._unrunnable:
                log.warning("task %s: %s; handing it back, not claiming it again", task.id, exc)
                self._unrunnable.add(pair)
            self.committer.submit(Release(task.id, task.attempt, decision="unknown_workflow"))
            return
        superseded = self._runs.get(task.id)
        if superseded is not None:
            # This worker recovered its own expired lease: the older run's writes are
            # fenced off already (another attempt), so it stops now, writing nothing.
            log.warning("task %s: attempt %d supersedes this worker's run", task.id, task.attempt)
            superseded.release()
        run = TaskRun(claimed, wf, self)
        run.lease_renewed = claimed_at
        run.begin()
        self._runs[task.id] = run
        self._tasks[task.id] = asyncio.create_task(self._drive(run), name=f"tether-task-{task.id}")

    async def _drive(self, run: TaskRun) -> None:
        try:
            await run.run()
        except StoreUnavailable as exc:  # only once stopping: the committer gave up
            log.warning(
                "task %s: its outcome was not committed (%s); another worker resumes it "
                "once its lease expires",
                run.task.id,
                exc,
            )
        except Exception:
            log.exception("task %s crashed the runner", run.task.id)
        finally:
            # A task this run suspended may already run again here under a new claim:
            # remove only our own entries.
            if self._runs.get(run.task.id) is run:
                del self._runs[run.task.id]
                del self._tasks[run.task.id]
            self._concluding.discard(run)
            self.completed += 1
            self._slot_freed.set()

    def reserve(self, wanted: int) -> int:
        """Reserve up to `wanted` free slots for tasks being submitted in this process
        (eager dispatch); return how many. Hand them back with `adopt`."""
        if not self.eager or self._main is None or self._stopping.is_set():
            return 0
        n = max(0, min(wanted, self.concurrency - self.active - self._reserved))
        self._reserved += n
        return n

    def adopt(self, claimed: list[Claimed], reserved: int) -> None:
        """Run tasks the store created already claimed for this worker; release the
        `reserved` slots (those not used return to the claim loop)."""
        self._reserved -= reserved
        if self._stopping.is_set():
            # Stopped while the submit committed: hand them back if we still can (else
            # their lease expires and another worker takes them).
            if not self.committer.closing:
                for item in claimed:
                    self.committer.submit(Release(item.task.id, item.task.attempt))
            return
        now = asyncio.get_running_loop().time()
        for item in claimed:
            self._start(item, now)
        if len(claimed) < reserved:
            self._slot_freed.set()

    def hold(self, run: RunLog) -> None:
        """`run` now holds step results (ADR 44): release them after HOLD_LIMIT unless it
        does so first (`unhold`). One timer for all runs, not one per held result."""
        loop = asyncio.get_running_loop()
        due = loop.time() + HOLD_LIMIT
        self._holding[run] = due
        if self._hold_timer is None:
            self._hold_timer = loop.call_at(due, self._release_due_holds)

    def unhold(self, run: RunLog) -> None:
        self._holding.pop(run, None)

    def _release_due_holds(self) -> None:
        self._hold_timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        # The same HOLD_LIMIT for all: insertion order is due order. (asyncio may run a
        # timer up to its clock resolution early: that much early is due.)
        for run, due in list(self._holding.items()):
            if due > now + HOLD_EARLY:
                self._hold_timer = loop.call_at(due, self._release_due_holds)
                return
            del self._holding[run]
            run.release_held()

    def concluding(self, run: RunState) -> None:
        """`run` has handed its final operation to the committer: free its slot now, so
        the next claim overlaps that commit instead of waiting for it."""
        self._concluding.add(run)
        self._slot_freed.set()
