"""Steps: executing a step (or replaying its outcome), retries and failures.

A step's outcome is committed before anything the workflow does next has an effect
(held, ADR 44). A transient failure is retried after the policy's backoff: short ones
wait in place, longer ones block the branch as a `retry_backoff` wait, so the task is
suspended and the slot freed. Every failed attempt is kept on the step's record with
its classification and that decision (`AttemptError`, built by `tether.failures`;
ADR 62).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tether import failures, serde
from tether.engine.context import SPEND_KEY, StepInfo, _current_context, _current_step
from tether.engine.gates import Hold, StepCall
from tether.engine.registry import result_adapter
from tether.engine.run.children import RunChildren
from tether.engine.run.state import INLINE_BACKOFF_MAX, LeaseLost, Stop
from tether.engine.run.waits import Wait
from tether.errors import (
    BudgetExceeded,
    Classification,
    StepFailed,
    SyncStepStuck,
    UnserializableResult,
    classify,
    is_transient,
    retry_after,
)
from tether.models import (
    AttemptError,
    Cost,
    RetryDecision,
    StepKind,
    StepRecord,
    StepStatus,
    TaskError,
    WaitReason,
)
from tether.retry import RetryPolicy

log = logging.getLogger("tether.run")


class RunSteps(RunChildren):
    """Running steps: execution, retry decisions and the records they leave."""

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
        kind: StepKind = StepKind.STEP,
    ) -> Any:
        """A durable call of `fn`: its recorded outcome on replay, else run and record.
        `kind` is `compensation` for a saga's compensations (`RunSaga`)."""
        rec = self._replayed(seq, name, kind)
        attempts_done = 0
        history: tuple[AttemptError, ...] = ()
        if rec is not None:
            if rec.status == StepStatus.SUCCEEDED:
                adapter = result_adapter(fn)
                return rec.result if adapter is None else adapter.validate_python(rec.result)
            if rec.status == StepStatus.FAILED:
                assert rec.error is not None
                raise StepFailed(
                    name,
                    rec.error.type,
                    rec.error.message,
                    permanent=rec.error.permanent,
                    traceback=rec.attempt_errors[-1].traceback if rec.attempt_errors else None,
                )
            attempts_done, history = rec.attempts, rec.attempt_errors
            if rec.wake_at is not None and rec.wake_at > self.clock.now():
                await self._block(seq, Wait(WaitReason.RETRY_BACKOFF, rec.wake_at))
        if (elsewhere := self._elsewhere(meta.get("queue") if meta else None)) is not None:
            await self._block(seq, Wait(None, None, queue=elsewhere))  # handed over there
        policy = retry or self.wf.retry
        self._in_flight += 1
        try:
            while True:
                attempt = attempts_done + 1
                if self._held or self._unconfirmed or self._lost:
                    await self._commit_held()
                call = None
                started = self.clock.now()
                notes: dict[str, Any] = {}  # what the attempt adds to meta (annotate)
                try:
                    if self.runtime.step_gates:
                        declared = meta or {}
                        call = StepCall(
                            self.task, seq, name, attempt, declared.get("integration"), declared
                        )
                        # A gate that raises refuses the attempt: its failure (ADR 92).
                        hold = await self._ask_gates(call)
                        if hold is not None:
                            self._in_flight -= 1
                            try:
                                await self._block(seq, Wait(hold.reason, hold.until))
                            finally:
                                self._in_flight += 1
                    result = await self._execute(
                        seq, name, attempt, fn, args, kwargs, timeout, notes
                    )
                    try:
                        encoded = serde.dumps(result)
                    except TypeError as exc:
                        raise UnserializableResult(
                            f"step {name!r} returned a value that cannot be stored as JSON: {exc}"
                        ) from exc
                except (LeaseLost, Stop, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    spent = None
                    if self.wf.budget.max_usd is not None:
                        spent = await self._spent_usd(notes)
                    failed = self._decide(exc, attempt, policy, started, spent)
                    if call is not None:
                        await self._tell_gates(call, failed, notes)
                    history = failures.kept(history, failed)
                    error = failures.step_error(failed, name)
                    if failed.retry_in is None:
                        await self._write(
                            StepRecord(
                                task_id=self.task.id,
                                seq=seq,
                                name=name,
                                kind=kind,
                                status=StepStatus.FAILED,
                                attempts=attempt,
                                error=error,
                                started_at=started,
                                finished_at=failed.finished_at,
                                meta={**(meta or {}), **notes},
                                attempt_errors=history,
                            )
                        )
                        raise StepFailed(
                            name,
                            error.type,
                            error.message,
                            permanent=error.permanent,
                            traceback=failed.traceback,
                        ) from exc
                    self._retries_used += 1
                    wake_at = self.clock.now() + failed.retry_in
                    await self._write(
                        StepRecord(
                            task_id=self.task.id,
                            seq=seq,
                            name=name,
                            kind=kind,
                            status=StepStatus.PENDING,
                            attempts=attempt,
                            error=error,
                            started_at=started,
                            wake_at=wake_at,
                            meta={**(meta or {}), **notes},  # the retry's event carries it
                            attempt_errors=history,
                        )
                    )
                    attempts_done = attempt
                    if failed.decision == RetryDecision.RETRY_BACKOFF:
                        self._in_flight -= 1
                        try:
                            await self._block(seq, Wait(WaitReason.RETRY_BACKOFF, wake_at))
                        finally:
                            self._in_flight += 1
                    else:
                        await self.clock.sleep(failed.retry_in)
                    continue
                if call is not None:
                    await self._tell_gates(call, None, notes)
                record = StepRecord(
                    task_id=self.task.id,
                    seq=seq,
                    name=name,
                    kind=kind,
                    status=StepStatus.SUCCEEDED,
                    attempts=attempt,
                    result=serde.loads(encoded),
                    started_at=started,
                    finished_at=self.clock.now(),
                    meta={**(meta or {}), **notes},
                    attempt_errors=history,
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

    async def _ask_gates(self, call: StepCall) -> Hold | None:
        """The first hold a step gate puts on `call`, in the gates' order, or None if
        all let it start. The gates after a hold are not asked: what they would take
        for the attempt (a bucket's request, a slot) is not taken for a step that
        waits anyway; the step asks them all again when the hold ends."""
        for gate in self.runtime.step_gates:
            hold = await gate.before(call)
            if hold is not None:
                return hold
        return None

    async def _tell_gates(
        self, call: StepCall, error: AttemptError | None, notes: dict[str, Any]
    ) -> None:
        for gate in self.runtime.step_gates:
            await gate.after(call, error, notes)

    async def _execute(
        self,
        seq: int,
        name: str,
        attempt: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        notes: dict[str, Any],
    ) -> Any:
        info = StepInfo(
            self.task.id, self.task.tenant, seq, name, attempt, self._idempotency_key(seq), notes
        )
        step_token = _current_step.set(info)
        ctx_token = _current_context.set(None)  # a step calling a step just calls it
        try:
            if inspect.iscoroutinefunction(fn):
                call: Awaitable[Any] = fn(*args, **kwargs)
                result = await (call if timeout is None else asyncio.wait_for(call, timeout))
            elif timeout is None:
                result = await self.worker.run_sync(fn, args, kwargs)
            else:
                result = await self._run_sync_within(timeout, fn, args, kwargs)
            if inspect.isawaitable(result):  # a sync def returning a coroutine
                result = await result
            return result
        finally:
            _current_context.reset(ctx_token)
            _current_step.reset(step_token)

    async def _run_sync_within(
        self,
        timeout: float,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """A sync step with a timeout, on the worker's threads. A thread cannot be
        interrupted, so an attempt that times out ends only when its thread returns (its
        result dropped): the next attempt never runs beside it. A thread still running
        `timeout` seconds after the timeout is left behind and the step fails for good
        (ADR 66)."""
        future = self.worker.run_sync(fn, args, kwargs)
        try:
            done, _ = await asyncio.wait({future}, timeout=timeout)
            if done:
                return future.result()
            done, _ = await asyncio.wait({future}, timeout=timeout)
            if not done:
                raise SyncStepStuck(
                    f"the step ran past its {timeout:g} s timeout and its thread had not "
                    f"returned {timeout:g} s later; it is not retried while it may still run"
                )
            future.exception()  # the late outcome is dropped, not reported as unretrieved
            raise TimeoutError(f"the step ran past its {timeout:g} s timeout")
        finally:
            if not future.done():
                future.cancel()  # the thread's eventual outcome is dropped (StepThreads)

    async def _spent_usd(self, notes: dict[str, Any]) -> float | None:
        """What the task has spent, in dollars: its ledger line, plus what the failing
        attempt charged (booked only once the gates hear of it). None if unknown."""
        try:
            charged = Cost.from_json(notes.get(SPEND_KEY)).usd
            line = await self.runtime.store.task_spend(self.task.id, self.task.tenant)
        except Exception:  # unreadable (the ledger, a bad note): the other limits decide
            log.warning("task %s: its spend could not be read", self.task.id, exc_info=True)
            return None
        return charged + (0.0 if line is None else line.spent.usd)

    def _decide(
        self,
        exc: Exception,
        attempt: int,
        policy: RetryPolicy,
        started: float,
        spent_usd: float | None = None,
    ) -> AttemptError:
        """Classify a failed attempt and decide whether and when to try again
        (`spent_usd`: the task's spend, when its retry budget caps it)."""
        if isinstance(exc, BudgetExceeded):  # a budget refused the attempt (a step gate)
            verdict = Classification(False, "BudgetExceeded")
        elif isinstance(exc, UnserializableResult):  # Tether's own verdict: no classifier's
            verdict = Classification(False, "Permanent")
        elif isinstance(exc, SyncStepStuck):  # its thread may still run: never overlap it
            verdict = Classification(False, "SyncStepStuck")
        elif isinstance(exc, policy.non_retryable):
            verdict = Classification(False, "RetryPolicy.non_retryable")
        else:
            verdict = classify(exc, self.runtime.classifiers)
        delay: float | None = None
        reason = "budget_exceeded" if isinstance(exc, BudgetExceeded) else "permanent"
        if verdict.transient:
            delay, reason = self._retry_delay(exc, attempt, policy, spent_usd)
        if delay is None:
            decision = RetryDecision.GIVE_UP
        elif delay > INLINE_BACKOFF_MAX:
            decision = RetryDecision.RETRY_BACKOFF  # the task is suspended meanwhile
        else:
            decision = RetryDecision.RETRY
        return failures.attempt_error(
            exc, attempt, started, self.clock.now(), verdict, decision, reason, delay
        )

    def _retry_delay(
        self, exc: Exception, attempt: int, policy: RetryPolicy, spent_usd: float | None = None
    ) -> tuple[float | None, str]:
        """Seconds until the next attempt of a transient failure (None: no retry), and
        why (`backoff` / `retry_after`, or why no retry is left)."""
        if attempt >= policy.max_attempts:
            return None, "attempts_exhausted"
        budget = self.wf.budget
        if self._retries_used >= budget.max_retries:
            return None, "retry_budget_exhausted"
        started = self.task.started_at or self.clock.now()
        if (
            budget.max_elapsed is not None
            and self.clock.now() - started > budget.max_elapsed.total_seconds()
        ):
            return None, "elapsed_budget_exhausted"
        if budget.max_usd is not None and spent_usd is not None and spent_usd >= budget.max_usd:
            return None, "spend_budget_exhausted"
        hinted = retry_after(exc)  # the server's Retry-After, or Transient(retry_after=)
        if hinted is not None:
            return hinted, "retry_after"
        return policy.backoff(attempt), "backoff"

    def _error(self, exc: BaseException, step: str | None) -> TaskError:
        """Why the task failed, from an exception raised outside a step's attempts."""
        permanent = not isinstance(exc, Exception) or not is_transient(
            exc, self.runtime.classifiers
        )
        return failures.task_error(exc, step, permanent=permanent)
