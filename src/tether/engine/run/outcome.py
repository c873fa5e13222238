"""Outcomes: how a run ends once the workflow returned, raised or went quiescent.

`_conclude` decides (done, failed, cancelled, waiting, or nothing when the lease is
lost or the worker released the task); `_suspend` and `_finish` commit that decision,
after every earlier step result is durable.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tether import failures, serde
from tether.engine.run.saga import RunSaga
from tether.engine.run.state import LeaseLost, Stop
from tether.engine.run.waits import suspension
from tether.errors import (
    BudgetExceeded,
    DeadlineExceeded,
    StepFailed,
    TaskCancelled,
    UnserializableResult,
    fingerprint,
)
from tether.models import TaskError, TaskPhase, TaskStatus, WaitReason
from tether.store.base import Finish, Release, Suspend

log = logging.getLogger("tether.run")


def _step_decision(exc: StepFailed) -> str:
    """Why a task whose step failed for good failed (its `task.failed` decision)."""
    if exc.error_type == "BudgetExceeded":  # a spend budget refused the step (ADR 92)
        return "budget_exceeded"
    return "step_failed_permanent" if exc.permanent else "retries_exhausted"


class RunOutcome(RunSaga):
    """Concluding a run: suspension, compensation or the task's end."""

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
        elif isinstance(exc, Stop):
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
                decision=_step_decision(exc),
                traceback=exc.traceback,
            )
        else:
            await self._finish_error(exc, None)

    async def _suspend(self) -> None:
        routed = next((w.queue for w in self._waits.values() if w.queue is not None), None)
        if routed is not None:
            await self._route(routed)
            return
        deadline = None if self._compensating else self.task.deadline
        reason, run_at, signals = suspension(self._waits.values(), deadline)
        self.release_held()
        if not await self._settle_unconfirmed():
            return
        children = any(w.reason == WaitReason.CHILD for w in self._waits.values())
        done = self._submit(
            Suspend(self.task.id, self.task.attempt, reason, run_at, signals, children)
        )
        self.worker.concluding(self)
        ok = await done
        if ok and run_at is not None:
            self.worker.wake_at(run_at, self.task.queue)

    async def _route(self, queue: str) -> None:
        """Hand the task to `queue`, whose workers replay it and run what a worker of
        this one's queues may not (ADR 93)."""
        self.release_held()
        if not await self._settle_unconfirmed():
            return
        done = self._submit(Release(self.task.id, self.task.attempt, "routed", queue))
        self.worker.concluding(self)
        await done

    async def _finish_error(self, exc: BaseException, step: str | None) -> None:
        err = self._error(exc, step)
        decision = {
            "NonDeterminismError": "non_determinism",
            "DeadlineExceeded": "deadline_exceeded",
            "BudgetExceeded": "budget_exceeded",
            "InputValidationError": "invalid_input",
            "ChildFailed": "child_failed",
        }.get(type(exc).__name__, "workflow_error")
        if isinstance(exc, BudgetExceeded | DeadlineExceeded):
            err.permanent = True
        await self._finish(
            TaskStatus.FAILED,
            error=err,
            decision=decision,
            traceback=failures.describe(exc).traceback,
        )

    async def _finish(
        self,
        status: TaskStatus,
        *,
        result: str | None = None,
        error: TaskError | None = None,
        decision: str,
        traceback: str | None = None,
    ) -> None:
        if not self._compensating and await self._compensates(status):
            cause = {
                "status": str(status),
                "decision": decision,
                "error": None if error is None else error.to_json(),
            }
            await self.compensate(cause)  # the end is logged once, when it comes
            return
        if status == TaskStatus.FAILED and error is not None:
            self._log_failure(error, decision, traceback)
        if self._unconfirmed and not await self._settle_unconfirmed():
            return  # an earlier step result is not durable: this run must not end the task
        held = self._take_held()
        done = self.worker.committer.submit(
            Finish(
                self.task.id,
                self.task.attempt,
                status,
                result,
                error,
                decision,
                tuple(held),
                parent_id=self.task.parent_id,
                children=self._has_children,
            )
        )
        self.worker.concluding(self)
        await done

    async def _compensates(self, status: TaskStatus) -> bool:
        """Whether ending with `status` must compensate first: a failure with steps to
        undo, or a cancellation that asked for it (read from the task: it may have
        been asked while this run ran)."""
        if status not in (TaskStatus.FAILED, TaskStatus.CANCELLED) or not self._compensable():
            return False
        if status == TaskStatus.FAILED:
            return True
        task = await self.runtime.store.get_task(self.task.id)
        return task is not None and task.phase == TaskPhase.COMPENSATION

    async def compensate(self, cause: dict[str, Any] | None) -> None:
        """Run the compensation program to its next stop (`RunSaga`) and conclude:
        `cause` is the end the workflow reached, None when compensation was asked for
        from outside (or the log already records it)."""
        self._compensating = True
        self._fatal = None
        self._waits.clear()  # the workflow's blocked branches are over
        loop = asyncio.get_running_loop()
        quiescent: asyncio.Future[None] = loop.create_future()
        self._quiescent = quiescent  # also resolved when a compensation blocks on a wait
        self._wf_task = loop.create_task(self._compensation(cause))
        self._wf_task.add_done_callback(lambda _: _resolve(quiescent))
        await quiescent
        program = self._wf_task
        if self._released or not program.done():
            program.cancel()
            await asyncio.gather(program, return_exceptions=True)
            if not (self._released or self._lost):
                await self._suspend()  # a long retry backoff of a compensation
            return
        if self._lost or program.cancelled():
            return
        exc = program.exception()
        if exc is None:
            status, error, decision, result = self._compensated_end()
            await self._finish(status, result=result, error=error, decision=decision)
        elif isinstance(exc, LeaseLost):
            return
        elif isinstance(exc, StepFailed):
            error = self._compensation_failed(exc.step, exc.error_type, exc.message)
            await self._finish(
                TaskStatus.FAILED,
                error=error,
                decision="compensation_failed",
                traceback=exc.traceback,
            )
        else:
            cause_exc = self._fatal or exc
            described = failures.describe(cause_exc)
            error = self._compensation_failed(None, type(cause_exc).__name__, str(cause_exc))
            await self._finish(
                TaskStatus.FAILED,
                error=error,
                decision="compensation_failed",
                traceback=described.traceback,
            )

    def _log_failure(self, error: TaskError, decision: str, traceback: str | None) -> None:
        """The task's failure at WARNING, with the failing step's (or workflow's)
        traceback as stored: the texts come from `tether.failures` (ADR 62)."""
        task = self.task
        where = f" in step {error.step!r}" if error.step else ""
        log.warning(
            "task %s (workflow %s v%d, attempt %d) failed%s: %s: %s [%s]%s",
            task.id,
            task.workflow,
            task.workflow_version,
            task.attempt,
            where,
            error.type,
            error.message,
            decision,
            f"\n{traceback.rstrip()}" if traceback else "",
            extra={
                "task_id": task.id,
                "correlation_id": task.correlation_id,
                "workflow": task.workflow,
                "workflow_version": task.workflow_version,
                "attempt": task.attempt,
                "step": error.step,
                "error_type": error.type,
                "decision": decision,
                "traceback": traceback,
            },
        )


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
