"""`TaskRun`: one execution of one claimed task, from start to its next stop.

The workflow function runs from the top. Each durable call takes the next sequence
number; a number already in the log returns its recorded outcome, a new one executes
and is committed before the workflow goes on. When every branch of the workflow is
blocked on a wait (timer, signal, approval, retry backoff) and no step is in flight,
the run is *quiescent*: it stops the workflow and suspends the task, releasing the slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from tether.engine.context import Context, _current_context
from tether.engine.run.outcome import RunOutcome
from tether.errors import DeadlineExceeded
from tether.models import StepKind, StepStatus, TaskStatus


class TaskRun(RunOutcome):
    """Runs one claimed task to its next stop: done, failed, cancelled or waiting.

    Its behaviour is layered by concern: `RunLog` (commits, replay), `RunWaits`,
    `RunSteps`, `RunSaga`, `RunOutcome`; this class starts and drives the workflow."""

    def cancel(self) -> None:
        """Cancel the task cooperatively: the running step sees CancelledError."""
        self._cancel_requested = True
        if self._compensating:
            return  # a saga undoing its steps runs to its end (ADR 83)
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
        if (
            self._wf_task is not None
            or self._cancel_requested
            or self._past_deadline()
            or self.compensation_due()
        ):
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
        if self._has_children and any(
            r.kind == StepKind.CHILD and r.status == StepStatus.PENDING for r in self.log.values()
        ):
            self.fetch_ended_children()  # read beside the replay, not after it

    def _past_deadline(self) -> bool:
        return self.task.deadline is not None and self.clock.now() >= self.task.deadline

    async def run(self) -> None:
        """Drive the workflow (or its compensation) to its next stop and commit that
        outcome."""
        if self.compensation_due():
            await self.compensate(None)
            return
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
            if not self._released:
                await self.settle_starts()  # no end or suspension before its children
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


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
