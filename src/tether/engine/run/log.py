"""The run's step log: sequence numbers, replay, held results and commits.

Every write a run makes goes through the worker's committer, in the workflow's order.
A step's result may be *held* until the workflow's next effect, so that the last step
of a task commits with its completion (ADR 44). While a commit is awaited the run
counts it as in flight: the workflow is quiescent (and may be suspended) only when
every branch is blocked and nothing is in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from tether.engine.run.state import LeaseLost, RunState, Stop
from tether.errors import NonDeterminismError, StoreUnavailable
from tether.models import StepKind, StepRecord, StepStatus
from tether.store.base import ExpireApproval, Op, OpenApproval, StepWrite

log = logging.getLogger("tether.run")


class RunLog(RunState):
    """Sequence numbers, replay lookups and every commit of a run."""

    # sequence and bookkeeping ----------------------------------------------------------
    def next_seq(self) -> int:
        """The sequence number of the workflow's next durable call."""
        self._seq += 1
        return self._seq

    def _idempotency_key(self, seq: int) -> str:
        # A re-run's step presents the key of the step it replaces: the chain's first
        # task and the same position (ADR 63), so an outside API deduplicates it.
        return f"{self.task.fork_root or self.task.id}:{seq}"

    def _replayed(self, seq: int, name: str, kind: StepKind) -> StepRecord | None:
        rec = self.log.get(seq)
        if rec is not None and (rec.name != name or rec.kind != kind):
            err = NonDeterminismError(
                f"replay found {kind} {name!r} at position {seq}, but the log recorded "
                f"{rec.kind} {rec.name!r}: the workflow code changed in a way that is not "
                "replay-safe (register the changed code as a new version, and keep the "
                f"old one, version {self.task.workflow_version}, registered for the tasks "
                "already started on it)"
            )
            self._fatal = err
            raise Stop() from err
        return rec

    def record_value(self, kind: StepKind, name: str, make: Callable[[], Any]) -> Any:
        """A value recorded once and replayed after (ctx.now/uuid/random)."""
        seq = self.next_seq()
        rec = self._replayed(seq, name, kind)
        if rec is not None:
            return rec.result
        value = make()
        now = self.clock.now()
        self._write_soon(
            StepRecord(
                task_id=self.task.id,
                seq=seq,
                name=name,
                kind=kind,
                status=StepStatus.SUCCEEDED,
                result=value,
                started_at=now,
                finished_at=now,
            )
        )
        return value

    # commits ----------------------------------------------------------------------------
    async def _write(self, record: StepRecord, consume_signal: int | None = None) -> None:
        await self._commit(StepWrite(self.task.id, self.task.attempt, record, consume_signal))
        self.log[record.seq] = record

    def _submit(self, op: Op) -> asyncio.Future[bool]:
        """Hand `op` to the committer, after any held step results: the committer keeps
        order, so the database sees this run's operations in the workflow's order."""
        self.release_held()
        return self.worker.committer.submit(op)

    async def _commit(self, op: StepWrite | OpenApproval | ExpireApproval) -> None:
        """Commit `op`, counting as in flight meanwhile: a branch writing its wait (or a
        result) is not blocked yet, so the workflow must not be suspended without it."""
        self._in_flight += 1
        try:
            ok = await _outcome(self._submit(op))
        finally:
            self._in_flight -= 1
            self._check_quiescent()
        if not ok:
            self._lost = True
            raise LeaseLost(self.task.id)

    def _write_soon(self, record: StepRecord) -> None:
        """Queue a record without waiting (ctx.now/uuid/random): the committer keeps
        order, so anything that depends on it commits after it."""
        self._submit(StepWrite(self.task.id, self.task.attempt, record)).add_done_callback(
            self._check_applied
        )
        self.log[record.seq] = record

    def _check_applied(self, fut: asyncio.Future[bool]) -> None:
        if not _applied(fut):
            self._lost = True

    # held step results ------------------------------------------------------------------
    # A step's result must be durable before anything the workflow does next can have an
    # effect: the next step's execution, a wait, the task's end. Holding it until then,
    # instead of waiting for its commit at once, lets the last step of a task commit with
    # the task's completion in one operation (ADR 44). Only a step that ends while
    # nothing else of the run is in flight is held (what follows is the workflow's own
    # code), and never longer than HOLD_LIMIT (that code may await something else).
    def _hold(self, record: StepRecord) -> None:
        if not self._held:
            self.worker.hold(self)  # it calls `release_held` after HOLD_LIMIT
        self._held.append(StepWrite(self.task.id, self.task.attempt, record))
        self.log[record.seq] = record

    def _take_held(self) -> list[StepWrite]:
        if not self._held:
            return []
        self.worker.unhold(self)
        held, self._held = self._held, []
        return held

    def release_held(self) -> None:
        """Queue the held step results (order kept; the caller's operation follows)."""
        # Only confirmed commits leave the list: a failed one must stop every later
        # step and the task's end (`_lost` is set by `_check_applied`).
        self._unconfirmed = [f for f in self._unconfirmed if not _applied(f)]
        for op in self._take_held():
            fut = self.worker.committer.submit(op)
            fut.add_done_callback(self._check_applied)
            self._unconfirmed.append(fut)

    async def _commit_held(self) -> None:
        """Before a step executes: every earlier step result is committed. Concurrent
        callers (branches of a gather) all wait for the same commits."""
        self.release_held()
        for fut in list(self._unconfirmed):
            if not await _outcome(fut):
                self._lost = True
        if self._lost:
            raise LeaseLost(self.task.id)

    async def _settle_unconfirmed(self) -> bool:
        """Before the task's end or suspension: False when an earlier step result did
        not commit (lease lost, or the database refused it), so the end must not."""
        for fut in list(self._unconfirmed):
            try:
                if not await fut:
                    self._lost = True
            except Exception as exc:
                log.error("task %s: a step result was not committed: %s", self.task.id, exc)
                self._lost = True
        return not self._lost

    # quiescence -------------------------------------------------------------------------
    def _check_quiescent(self) -> None:
        """Resolve `_quiescent` once some branch waits and nothing is in flight (and
        stays so for a few loop rounds). Called whenever either count drops."""
        if not self._waits or self._in_flight:
            return
        loop = asyncio.get_running_loop()

        # Let ready callbacks run first: a branch may be about to start a step.
        def confirm(rounds: int) -> None:
            if not self._waits or self._in_flight:
                return
            if rounds:
                loop.call_soon(confirm, rounds - 1)
            elif self._quiescent is not None and not self._quiescent.done():
                self._quiescent.set_result(None)

        loop.call_soon(confirm, 3)


async def _outcome(fut: asyncio.Future[bool]) -> bool:
    """Whether a commit applied; False too when the database stayed unreachable past
    the worker's shutdown (the committer gave up): the run then holds its task no
    longer, and the workflow's code never sees the store's error."""
    try:
        return await fut
    except StoreUnavailable:
        return False


def _applied(fut: asyncio.Future[bool]) -> bool:
    """The commit is done and applied."""
    return fut.done() and not fut.cancelled() and fut.exception() is None and fut.result()
