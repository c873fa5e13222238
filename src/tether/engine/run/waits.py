"""Waits: timers, signals, approvals, and how a blocked workflow suspends.

A wait is a step-log entry that stays `pending` until its condition holds. While it
does not, the branch *blocks* (`_block`): it never resumes in this run. Once every
branch is blocked and nothing is in flight, the task is suspended with the earliest
wake-up of its waits, and replays from its log when woken (by time, a signal or a
decision). A new kind of wait is one method here, built the same way (ADR 59):
replay its record, write it pending, test its condition, else `_block` with a `Wait`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tether.engine.context import Decision
from tether.engine.run.log import RunLog
from tether.engine.run.state import LeaseLost
from tether.ids import new_id
from tether.models import Approval, StepKind, StepRecord, StepStatus, WaitReason
from tether.store.base import ExpireApproval, OpenApproval


@dataclass
class Wait:
    """What one blocked branch waits for: the suspension is derived from these."""

    reason: WaitReason | None
    """None for a hand-off to `queue` (the task is routed there, not suspended)."""
    wake_at: float | None
    """When time alone ends the wait (None: only an outside event does)."""
    signal: str | None = None
    """A signal whose arrival ends it (a suspension races it: see `Suspend.signals`)."""
    queue: str | None = None
    """A queue whose workers must run what comes next (a step that names it, or the
    task's home): the task is handed there instead of suspended (ADR 93)."""


SUSPEND_PREFERENCE = (WaitReason.APPROVAL, WaitReason.BUDGET, WaitReason.SIGNAL, WaitReason.TIMER)
"""The reason a task waiting on several things shows, first present wins (else the
first wait's). An outside event a person or system must provide beats time."""


def suspension(
    waits: Iterable[Wait], deadline: float | None
) -> tuple[WaitReason, float | None, list[str]]:
    """(reason, run_at, signals) of a task whose branches are blocked on `waits`."""
    waits = list(waits)
    wakes = [w.wake_at for w in waits if w.wake_at is not None]
    if deadline is not None:
        wakes.append(deadline)  # a waiting task still ends at its deadline
    signals = sorted({w.signal for w in waits if w.signal})
    reason = next(w.reason for w in waits if w.reason is not None)
    for preferred in SUSPEND_PREFERENCE:
        if any(w.reason == preferred for w in waits):
            reason = preferred
            break
    return reason, min(wakes) if wakes else None, signals


class RunWaits(RunLog):
    """The waits a workflow can make, and blocking on them."""

    def _elsewhere(self, queue: str | None) -> str | None:
        """The queue a step of `queue` (None: the task's home, the queue it was
        submitted to) must be handed to, or None when this worker serves it: a step
        that names a queue runs on its workers, every other step on those of the
        task's home (ADR 93). Sync: every executed step asks."""
        target = queue or self.task.home_queue or self.task.queue
        return None if target in self.worker.queues else target

    async def _block(self, seq: int, wait: Wait) -> None:
        """Park this branch of the workflow; it never resumes in this run (the task is
        suspended once the whole workflow is quiescent, and replays later)."""
        self._waits[seq] = wait
        self._check_quiescent()
        await asyncio.get_running_loop().create_future()

    def _done(self, rec: StepRecord, result: Any) -> StepRecord:
        """`rec` (a pending wait) as succeeded with `result`."""
        return StepRecord(
            task_id=rec.task_id,
            seq=rec.seq,
            name=rec.name,
            kind=rec.kind,
            status=StepStatus.SUCCEEDED,
            attempts=rec.attempts,
            result=result,
            started_at=rec.started_at,
            finished_at=self.clock.now(),
            wake_at=rec.wake_at,
            meta=rec.meta,
        )

    # timers -----------------------------------------------------------------------------
    async def sleep(self, seq: int, wake_at: float) -> None:
        """ctx.sleep / ctx.sleep_until: wait until `wake_at`."""
        rec = self._replayed(seq, "sleep", StepKind.SLEEP)
        if rec is not None and rec.status == StepStatus.SUCCEEDED:
            return
        if rec is None:
            rec = StepRecord(
                task_id=self.task.id,
                seq=seq,
                name="sleep",
                kind=StepKind.SLEEP,
                status=StepStatus.PENDING,
                started_at=self.clock.now(),
                wake_at=wake_at,
            )
            if wake_at > self.clock.now():
                await self._write(rec)
        assert rec.wake_at is not None
        if rec.wake_at > self.clock.now():
            await self._block(seq, Wait(WaitReason.TIMER, rec.wake_at))
        await self._write(self._done(rec, None))

    # signals ----------------------------------------------------------------------------
    async def wait_for_signal(self, seq: int, name: str, timeout: float | None) -> Any:
        """ctx.wait_for_signal: the payload of the next unconsumed signal `name`."""
        rec = self._replayed(seq, name, StepKind.SIGNAL)
        if rec is None:
            rec = StepRecord(
                task_id=self.task.id,
                seq=seq,
                name=name,
                kind=StepKind.SIGNAL,
                status=StepStatus.PENDING,
                started_at=self.clock.now(),
                wake_at=None if timeout is None else self.clock.now() + timeout,
            )
        while rec.status == StepStatus.PENDING:
            sig = next(
                (s for s in self.signals if s.name == name and s.id not in self._taken_signals),
                None,
            )
            if sig is not None:
                self._taken_signals.add(sig.id)
                rec = self._done(rec, {"payload": sig.payload, "signal_id": sig.id})
                await self._write(rec, consume_signal=sig.id)
            elif rec.wake_at is not None and rec.wake_at <= self.clock.now():
                rec = self._done(rec, {"timeout": True})
                await self._write(rec)
            else:
                if seq not in self.log:
                    await self._write(rec)
                await self._block(seq, Wait(WaitReason.SIGNAL, rec.wake_at, signal=name))
        result = rec.result or {}
        if result.get("timeout"):
            raise TimeoutError(f"no signal {name!r} arrived in time")
        return result.get("payload")

    # approvals --------------------------------------------------------------------------
    async def approval(
        self,
        seq: int,
        name: str,
        risk: str,
        request: dict[str, Any],
        timeout: float | None,
        on_timeout: str,
    ) -> Decision:
        """ctx.approval: open an approval request (once) and wait for its outcome."""
        rec = self._replayed(seq, name, StepKind.APPROVAL)
        if rec is not None and rec.status == StepStatus.SUCCEEDED:
            return Decision(**rec.result)
        approval = self.approvals.get(seq)
        if approval is None:
            approval = await self._open_approval(seq, name, risk, request, timeout, on_timeout)
        while approval.status == "pending":
            if approval.expires_at is not None and approval.expires_at <= self.clock.now():
                approval = await self._expire_approval(approval)
                self.approvals[seq] = approval
                break
            await self._block(seq, Wait(WaitReason.APPROVAL, approval.expires_at))
        decision = Decision(
            approved=approval.status == "approved",
            status=approval.status,
            resolution=approval.resolution or "reviewer",
            reviewers=[d["reviewer"] for d in approval.decisions],
            reason=approval.reason,
            changes=approval.changes,
            approval_id=approval.id,
        )
        pending = self.log.get(seq) or StepRecord(
            task_id=self.task.id,
            seq=seq,
            name=name,
            kind=StepKind.APPROVAL,
            status=StepStatus.PENDING,
            started_at=self.clock.now(),
        )
        await self._write(self._done(pending, decision.__dict__))
        return decision

    async def _expire_approval(self, approval: Approval) -> Approval:
        """Commit `approval`'s timeout through the committer (fenced by attempt, like
        every write of the run), then read back the outcome that stands: the timeout,
        or a decision that committed first."""
        # In flight until the outcome is read: this branch is not blocked meanwhile,
        # so the workflow must not be suspended without the approval's step.
        self._in_flight += 1
        try:
            await self._commit(ExpireApproval(self.task.id, self.task.attempt, approval.id))
            fresh = await self.runtime.store.get_approval(approval.id)
        finally:
            self._in_flight -= 1
            self._check_quiescent()
        if fresh is None:  # purged, so the task ended elsewhere: this run is not its own
            self._lost = True
            raise LeaseLost(self.task.id)
        return fresh

    async def _open_approval(
        self,
        seq: int,
        name: str,
        risk: str,
        request: dict[str, Any],
        timeout: float | None,
        on_timeout: str,
    ) -> Approval:
        policy = self.runtime.approval_policy(self.task.tenant, self.task.workflow)
        required, auto = policy.required_approvers(risk, f"{self.task.id}:{seq}")
        now = self.clock.now()
        approval = Approval(
            id=new_id(),
            task_id=self.task.id,
            tenant=self.task.tenant,
            workflow=self.task.workflow,
            seq=seq,
            status="approved" if auto else "pending",
            risk=risk,
            request=request,
            required=required,
            submitter=self.task.created_by,
            created_at=now,
            expires_at=None if timeout is None else now + timeout,
            on_timeout=on_timeout,
            resolution=auto,
            decided_at=now if auto else None,
        )
        await self._commit(OpenApproval(self.task.id, self.task.attempt, approval))
        self.approvals[seq] = approval
        if auto is None:
            await self._write(
                StepRecord(
                    task_id=self.task.id,
                    seq=seq,
                    name=name,
                    kind=StepKind.APPROVAL,
                    status=StepStatus.PENDING,
                    started_at=now,
                    wake_at=approval.expires_at,
                    meta={"approval_id": approval.id, "risk": risk},
                )
            )
        return approval
