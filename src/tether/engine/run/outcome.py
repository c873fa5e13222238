"""Outcomes: how a run ends once the workflow returned, raised or went quiescent.

`_conclude` decides (done, failed, cancelled, waiting, or nothing when the lease is
lost or the worker released the task); `_suspend` and `_finish` commit that decision,
after every earlier step result is durable.
"""

from __future__ import annotations

import asyncio
import logging

from tether import failures, serde
from tether.engine.run.state import LeaseLost, Stop
from tether.engine.run.steps import RunSteps
from tether.engine.run.waits import suspension
from tether.errors import (
    BudgetExceeded,
    DeadlineExceeded,
    StepFailed,
    TaskCancelled,
    UnserializableResult,
    fingerprint,
)
from tether.models import TaskError, TaskStatus, WaitReason
from tether.store.base import Finish, Suspend

log = logging.getLogger("tether.run")


class RunOutcome(RunSteps):
    """Concluding a run: suspension or the task's end."""

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
                decision="step_failed_permanent" if exc.permanent else "retries_exhausted",
                traceback=exc.traceback,
            )
        else:
            await self._finish_error(exc, None)

    async def _suspend(self) -> None:
        reason, run_at, signals = suspension(self._waits.values(), self.task.deadline)
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
