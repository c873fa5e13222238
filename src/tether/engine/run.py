"""`TaskRun`: one execution of one claimed task, replaying its step log.

The workflow function runs from the top. Each durable call takes the next sequence
number; a number already in the log returns its recorded outcome, a new one executes
and is committed before the workflow goes on. When every branch of the workflow is
blocked on a wait (timer, signal, approval, retry backoff) and no step is in flight,
the run is *quiescent*: it stops the workflow and suspends the task, releasing the slot.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether import serde
from tether.clock import Clock
from tether.engine.context import (
    Context,
    Decision,
    StepInfo,
    _current_context,
    _current_step,
)
from tether.engine.registry import WorkflowDef, result_adapter
from tether.errors import (
    BudgetExceeded,
    DeadlineExceeded,
    NonDeterminismError,
    StepFailed,
    TaskCancelled,
    Transient,
    UnserializableResult,
    fingerprint,
    is_transient,
)
from tether.ids import new_id
from tether.models import (
    Approval,
    StepKind,
    StepRecord,
    StepStatus,
    TaskError,
    TaskStatus,
    WaitReason,
)
from tether.retry import RetryPolicy
from tether.store.base import Claimed, Finish, Op, OpenApproval, StepWrite, Suspend

if TYPE_CHECKING:
    from tether.engine.worker import Worker

log = logging.getLogger("tether.run")

INLINE_BACKOFF_MAX = 2.0
"""Retry backoffs up to this many seconds wait in place; longer ones suspend the task
(`waiting`/`retry_backoff`) and free the worker slot."""


HOLD_LIMIT = 0.05
"""Seconds a step result may wait for the workflow's next effect before it is committed
on its own (ADR 44)."""


class LeaseLost(BaseException):
    """This worker no longer holds the task (its lease expired and another took it).
    A BaseException so that workflow code's `except Exception` cannot swallow it."""


class _Stop(BaseException):
    """Unwinds the workflow when the run must end (fatal replay error)."""


@dataclass
class _Wait:
    reason: WaitReason
    wake_at: float | None
    signal: str | None = None


class TaskRun:
    """Runs one claimed task to its next stop: done, failed, cancelled or waiting."""

    def __init__(
        self,
        claimed: Claimed,
        wf: WorkflowDef,
        worker: Worker,
    ) -> None:
        self.task = claimed.task
        self.log = claimed.steps
        self.signals = claimed.signals
        self.approvals = claimed.approvals
        self.wf = wf
        self.worker = worker
        self.app = worker.app
        self.clock: Clock = worker.app.clock
        self._seq = 0
        self._in_flight = 0
        self._waits: dict[int, _Wait] = {}
        self._taken_signals: set[int] = set()
        self._held: list[StepWrite] = []
        self._start_error: Exception | None = None
        self._unconfirmed: list[asyncio.Future[bool]] = []
        self._quiescent: asyncio.Future[None] | None = None
        self._wf_task: asyncio.Task[Any] | None = None
        self._fatal: BaseException | None = None
        self._lost = False
        self._released = False
        self.lease_renewed = 0.0
        """Event-loop time at which this worker last knew its lease good (claim, heartbeat)."""
        self._cancel_requested = claimed.task.cancel_requested
        self._retries_used = sum(max(0, r.attempts - 1) for r in claimed.steps.values())

    # sequence and bookkeeping ----------------------------------------------------------
    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _idempotency_key(self, seq: int) -> str:
        return f"{self.task.id}:{seq}"

    async def _write(self, record: StepRecord, consume_signal: int | None = None) -> None:
        await self._commit(StepWrite(self.task.id, self.task.attempt, record, consume_signal))
        self.log[record.seq] = record

    def _submit(self, op: Op) -> asyncio.Future[bool]:
        """Hand `op` to the committer, after any held step results: the committer keeps
        order, so the database sees this run's operations in the workflow's order."""
        self.release_held()
        return self.worker.committer.submit(op)

    async def _commit(self, op: StepWrite | OpenApproval) -> None:
        """Commit `op`, counting as in flight meanwhile: a branch writing its wait (or a
        result) is not blocked yet, so the workflow must not be suspended without it."""
        self._in_flight += 1
        try:
            ok = await self._submit(op)
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
            if not await fut:
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

    def _replayed(self, seq: int, name: str, kind: StepKind) -> StepRecord | None:
        rec = self.log.get(seq)
        if rec is not None and (rec.name != name or rec.kind != kind):
            err = NonDeterminismError(
                f"replay found {kind} {name!r} at position {seq}, but the log recorded "
                f"{rec.kind} {rec.name!r}: the workflow code changed in a way that is not "
                "replay-safe (keep the old path for tasks already started: branch on "
                "ctx.task.workflow_version, and bump the version for new tasks)"
            )
            self._fatal = err
            raise _Stop() from err
        return rec

    # steps -----------------------------------------------------------------------------
    async def run_step(
        self,
        seq: int,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: RetryPolicy | None,
        timeout: float | None,
        meta: dict[str, Any] | None,
    ) -> Any:
        rec = self._replayed(seq, name, StepKind.STEP)
        attempts_done = 0
        if rec is not None:
            if rec.status == StepStatus.SUCCEEDED:
                adapter = result_adapter(fn)
                return rec.result if adapter is None else adapter.validate_python(rec.result)
            if rec.status == StepStatus.FAILED:
                assert rec.error is not None
                raise StepFailed(
                    name, rec.error.type, rec.error.message, permanent=rec.error.permanent
                )
            attempts_done = rec.attempts
            if rec.wake_at is not None and rec.wake_at > self.clock.now():
                await self._block(seq, _Wait(WaitReason.RETRY_BACKOFF, rec.wake_at))
        policy = retry or self.wf.retry
        self._in_flight += 1
        try:
            while True:
                attempt = attempts_done + 1
                if self._held or self._unconfirmed or self._lost:
                    await self._commit_held()
                started = self.clock.now()
                try:
                    result = await self._execute(seq, name, attempt, fn, args, kwargs, timeout)
                    encoded = serde.dumps(result)
                except (LeaseLost, _Stop, asyncio.CancelledError):
                    raise
                except TypeError as exc:
                    if "JSON serializable" not in str(exc):
                        raise
                    err = UnserializableResult(
                        f"step {name!r} returned a value that cannot be stored as JSON: {exc}"
                    )
                    await self._fail_step(seq, name, attempt, started, err, meta)
                    raise StepFailed(name, type(err).__name__, str(err), permanent=True) from None
                except Exception as exc:
                    delay = self._retry_delay(exc, attempt, policy)
                    if delay is None:
                        await self._fail_step(seq, name, attempt, started, exc, meta)
                        raise StepFailed(
                            name,
                            type(exc).__name__,
                            str(exc),
                            permanent=not is_transient(exc, self.app.classifiers),
                        ) from exc
                    self._retries_used += 1
                    wake_at = self.clock.now() + delay
                    await self._write(
                        StepRecord(
                            task_id=self.task.id,
                            seq=seq,
                            name=name,
                            kind=StepKind.STEP,
                            status=StepStatus.PENDING,
                            attempts=attempt,
                            error=self._error(exc, name),
                            started_at=started,
                            wake_at=wake_at,
                        )
                    )
                    attempts_done = attempt
                    if delay > INLINE_BACKOFF_MAX:
                        self._in_flight -= 1
                        try:
                            await self._block(seq, _Wait(WaitReason.RETRY_BACKOFF, wake_at))
                        finally:
                            self._in_flight += 1
                    else:
                        await self.clock.sleep(delay)
                    continue
                record = StepRecord(
                    task_id=self.task.id,
                    seq=seq,
                    name=name,
                    kind=StepKind.STEP,
                    status=StepStatus.SUCCEEDED,
                    attempts=attempt,
                    result=serde.loads(encoded),
                    started_at=started,
                    finished_at=self.clock.now(),
                    meta=meta or {},
                )
                if self._in_flight > 1:
                    # Another branch is still running: its end (and so the next effect)
                    # is not in sight, and this step must not wait for it to be durable.
                    await self._write(record)
                else:
                    self._hold(record)
                return result
        finally:
            self._in_flight -= 1
            self._check_quiescent()

    async def _execute(
        self,
        seq: int,
        name: str,
        attempt: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        info = StepInfo(
            self.task.id, self.task.tenant, seq, name, attempt, self._idempotency_key(seq)
        )
        step_token = _current_step.set(info)
        ctx_token = _current_context.set(None)  # a step calling a step just calls it
        try:
            if inspect.iscoroutinefunction(fn):
                awaitable: Awaitable[Any] = fn(*args, **kwargs)
            else:
                awaitable = self.worker.run_sync(fn, args, kwargs)
            if timeout is not None:
                return await asyncio.wait_for(awaitable, timeout)
            result = await awaitable
            if inspect.isawaitable(result):  # a sync def returning a coroutine
                result = await result
            return result
        finally:
            _current_context.reset(ctx_token)
            _current_step.reset(step_token)

    def _retry_delay(self, exc: Exception, attempt: int, policy: RetryPolicy) -> float | None:
        """Seconds until the next attempt, or None when the step must fail now."""
        if isinstance(exc, policy.non_retryable) or not is_transient(exc, self.app.classifiers):
            return None
        if attempt >= policy.max_attempts:
            return None
        budget = self.wf.budget
        if self._retries_used >= budget.max_retries:
            return None
        started = self.task.started_at or self.clock.now()
        if (
            budget.max_elapsed is not None
            and self.clock.now() - started > budget.max_elapsed.total_seconds()
        ):
            return None
        if isinstance(exc, Transient) and exc.retry_after is not None:
            return max(0.0, exc.retry_after)
        return policy.backoff(attempt)

    def _error(self, exc: BaseException, step: str | None) -> TaskError:
        type_name = type(exc).__name__
        message = str(exc) or type_name
        return TaskError(
            type=type_name,
            message=message,
            fingerprint=fingerprint(type_name, message, step),
            step=step,
            permanent=not isinstance(exc, Exception) or not is_transient(exc, self.app.classifiers),
        )

    async def _fail_step(
        self,
        seq: int,
        name: str,
        attempt: int,
        started: float,
        exc: BaseException,
        meta: dict[str, Any] | None,
    ) -> None:
        await self._write(
            StepRecord(
                task_id=self.task.id,
                seq=seq,
                name=name,
                kind=StepKind.STEP,
                status=StepStatus.FAILED,
                attempts=attempt,
                error=self._error(exc, name),
                started_at=started,
                finished_at=self.clock.now(),
                meta=meta or {},
            )
        )

    # recorded values --------------------------------------------------------------------
    def record_value(self, kind: StepKind, name: str, make: Callable[[], Any]) -> Any:
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

    # waits ------------------------------------------------------------------------------
    async def sleep(self, seq: int, wake_at: float) -> None:
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
            await self._block(seq, _Wait(WaitReason.TIMER, rec.wake_at))
        await self._write(self._done(rec, None))

    def _done(self, rec: StepRecord, result: Any) -> StepRecord:
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

    async def wait_for_signal(self, seq: int, name: str, timeout: float | None) -> Any:
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
                await self._block(seq, _Wait(WaitReason.SIGNAL, rec.wake_at, signal=name))
        result = rec.result or {}
        if result.get("timeout"):
            raise TimeoutError(f"no signal {name!r} arrived in time")
        return result.get("payload")

    async def approval(
        self,
        seq: int,
        name: str,
        risk: str,
        request: dict[str, Any],
        timeout: float | None,
        on_timeout: str,
    ) -> Decision:
        rec = self._replayed(seq, name, StepKind.APPROVAL)
        if rec is not None and rec.status == StepStatus.SUCCEEDED:
            return Decision(**rec.result)
        approval = self.approvals.get(seq)
        if approval is None:
            approval = await self._open_approval(seq, name, risk, request, timeout, on_timeout)
        while approval.status == "pending":
            if approval.expires_at is not None and approval.expires_at <= self.clock.now():
                approval = await self.app.store.expire_approval(approval.id, self.clock.now())
                self.approvals[seq] = approval
                break
            await self._block(seq, _Wait(WaitReason.APPROVAL, approval.expires_at))
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

    async def _open_approval(
        self,
        seq: int,
        name: str,
        risk: str,
        request: dict[str, Any],
        timeout: float | None,
        on_timeout: str,
    ) -> Approval:
        policy = self.app.policies.lookup(self.task.tenant, self.task.workflow)
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

    async def _block(self, seq: int, wait: _Wait) -> None:
        """Park this branch of the workflow; it never resumes in this run (the task is
        suspended once the whole workflow is quiescent, and replays later)."""
        self._waits[seq] = wait
        self._check_quiescent()
        await asyncio.get_running_loop().create_future()

    def _check_quiescent(self) -> None:
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

    # the run ----------------------------------------------------------------------------
    def cancel(self) -> None:
        """Cancel the task cooperatively: the running step sees CancelledError."""
        self._cancel_requested = True
        if self._wf_task is not None and not self._wf_task.done():
            self._wf_task.cancel()

    def release(self) -> None:
        """Stop the workflow without concluding: the worker hands the task back."""
        self._released = True
        self.release_held()  # finished steps stay finished; the Release follows them
        if self._wf_task is not None and not self._wf_task.done():
            self._wf_task.cancel()

    def begin(self) -> None:
        """Start the workflow's asyncio task now, if it can start: it then runs before
        whatever the event loop queued after the claim (a crowd of result waiters, say).
        `run` does the rest, and starts it itself if `begin` was not called."""
        if self._wf_task is not None or self._cancel_requested or self._past_deadline():
            return
        try:
            args, kwargs = self.wf.binding.bind(self.wf.name, self.task.input)
        except Exception as exc:
            self._start_error = exc
            return
        loop = asyncio.get_running_loop()
        ctx = Context(self)
        token = _current_context.set(ctx)
        try:
            self._wf_task = loop.create_task(_as_coroutine(self.wf.fn(ctx, *args, **kwargs)))
        except Exception as exc:  # a plain `def` workflow that raised when called
            self._start_error = exc
            return
        finally:
            _current_context.reset(token)
        self._quiescent = loop.create_future()  # the task is only scheduled: it runs later

    def _past_deadline(self) -> bool:
        return self.task.deadline is not None and self.clock.now() >= self.task.deadline

    async def run(self) -> None:
        """Drive the workflow to its next stop and commit that outcome."""
        if self._wf_task is None and self._start_error is None:
            self.begin()
        if self._wf_task is None or self._quiescent is None:
            if self._cancel_requested:
                await self._finish(TaskStatus.CANCELLED, decision="cancel_requested")
            elif self._start_error is not None:
                await self._finish_error(self._start_error, None)
            else:
                await self._finish_error(DeadlineExceeded("the task passed its deadline"), None)
            return
        loop = asyncio.get_running_loop()
        deadline_handle = None
        if self.task.deadline is not None:
            deadline_handle = loop.call_later(
                max(0.0, self.task.deadline - self.clock.now()), self._deadline_passed
            )
        # `_quiescent` resolves when the workflow waits with nothing in flight; its end
        # resolves it too (one future to await instead of `asyncio.wait` on two).
        self._wf_task.add_done_callback(self._workflow_ended)
        try:
            await self._quiescent
        finally:
            if deadline_handle is not None:
                deadline_handle.cancel()
        await self._conclude()

    def _workflow_ended(self, _: asyncio.Task[Any]) -> None:
        if self._quiescent is not None and not self._quiescent.done():
            self._quiescent.set_result(None)

    def _deadline_passed(self) -> None:
        self._fatal = DeadlineExceeded("the task passed its deadline")
        if self._wf_task is not None:
            self._wf_task.cancel()

    async def _conclude(self) -> None:
        wf_task = self._wf_task
        assert wf_task is not None
        if self._released:
            if not wf_task.done():
                wf_task.cancel()
            await asyncio.gather(wf_task, return_exceptions=True)
            return
        if not wf_task.done():
            wf_task.cancel()
            await asyncio.gather(wf_task, return_exceptions=True)
            if self._lost:
                return
            if self._fatal is None and not self._cancel_requested:
                await self._suspend()
                return
        if not wf_task.cancelled():
            wf_task.exception()  # retrieved: the outcome is decided below
        if self._lost:
            return
        if self._fatal is not None:
            await self._finish_error(self._fatal, None)
            return
        if wf_task.cancelled():
            if self._cancel_requested:
                await self._finish(TaskStatus.CANCELLED, decision="cancel_requested")
            return
        exc = wf_task.exception()
        if exc is None:
            try:
                encoded = serde.dumps(wf_task.result())
            except TypeError as err:
                await self._finish_error(
                    UnserializableResult(f"the workflow returned a value that is not JSON: {err}"),
                    None,
                )
                return
            await self._finish(TaskStatus.SUCCEEDED, result=encoded, decision="completed")
        elif isinstance(exc, LeaseLost):
            return
        elif isinstance(exc, _Stop):
            await self._finish_error(self._fatal or exc, None)
        elif isinstance(exc, TaskCancelled | asyncio.CancelledError) and self._cancel_requested:
            await self._finish(TaskStatus.CANCELLED, decision="cancel_requested")
        elif isinstance(exc, StepFailed):
            failure = TaskError(
                type=exc.error_type,
                message=exc.message,
                fingerprint=fingerprint(exc.error_type, exc.message, exc.step),
                step=exc.step,
                permanent=exc.permanent,
            )
            await self._finish(
                TaskStatus.FAILED,
                error=failure,
                decision="step_failed_permanent" if exc.permanent else "retries_exhausted",
            )
        else:
            await self._finish_error(exc, None)

    async def _suspend(self) -> None:
        waits = list(self._waits.values())
        wakes = [w.wake_at for w in waits if w.wake_at is not None]
        if self.task.deadline is not None:
            wakes.append(self.task.deadline)  # a waiting task still ends at its deadline
        signals = sorted({w.signal for w in waits if w.signal})
        reason = waits[0].reason
        for preferred in (WaitReason.APPROVAL, WaitReason.SIGNAL, WaitReason.TIMER):
            if any(w.reason == preferred for w in waits):
                reason = preferred
                break
        run_at = min(wakes) if wakes else None
        self.release_held()
        if not await self._settle_unconfirmed():
            return
        done = self._submit(Suspend(self.task.id, self.task.attempt, reason, run_at, signals))
        self.worker.concluding(self)
        ok = await done
        if ok and run_at is not None:
            self.worker.wake_at(run_at, self.task.queue)

    async def _finish_error(self, exc: BaseException, step: str | None) -> None:
        err = self._error(exc, step)
        decision = {
            "NonDeterminismError": "non_determinism",
            "DeadlineExceeded": "deadline_exceeded",
            "BudgetExceeded": "budget_exceeded",
            "InputValidationError": "invalid_input",
        }.get(type(exc).__name__, "workflow_error")
        if isinstance(exc, BudgetExceeded | DeadlineExceeded):
            err.permanent = True
        await self._finish(TaskStatus.FAILED, error=err, decision=decision)

    async def _finish(
        self,
        status: TaskStatus,
        *,
        result: str | None = None,
        error: TaskError | None = None,
        decision: str,
    ) -> None:
        if status == TaskStatus.FAILED and error is not None:
            log.info(
                "task %s failed: %s: %s",
                self.task.id,
                error.type,
                error.message,
                extra={"task_id": self.task.id, "correlation_id": self.task.correlation_id},
            )
        if self._unconfirmed and not await self._settle_unconfirmed():
            return  # an earlier step result is not durable: this run must not end the task
        held = self._take_held()
        done = self.worker.committer.submit(
            Finish(self.task.id, self.task.attempt, status, result, error, decision, tuple(held))
        )
        self.worker.concluding(self)
        await done


def _applied(fut: asyncio.Future[bool]) -> bool:
    """The commit is done and applied."""
    return fut.done() and not fut.cancelled() and fut.exception() is None and fut.result()


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
