"""Sagas: undoing a task's completed steps, latest first (ADR 83).

A step may name its compensation, an `@app.step` that takes the step's result; the
step's record keeps that name (`meta["compensate"]`). A run compensates when its
workflow fails, when a cancellation asked for it, or when it runs an operator's
compensation fork (phase `compensation`). It first writes a `compensating` record
whose result is the outcome the task will end with (the *cause*), which puts the task
in phase `compensation`; then it runs the compensation of each succeeded step that has
one, in reverse order of the steps, each a durable step of kind `compensation` at the
position that order gives it. The program runs as the run's workflow would: a long
retry backoff suspends the task, and a run that finds the `compensating` record (after
a crash, or a wake-up) runs the program instead of the workflow, skipping what the log
shows done. A cancellation does not stop it; a deadline does not apply to it.
"""

from __future__ import annotations

from typing import Any

from tether import serde
from tether.engine.run.steps import RunSteps
from tether.errors import fingerprint
from tether.models import StepKind, StepRecord, StepStatus, TaskError, TaskPhase, TaskStatus


class RunSaga(RunSteps):
    """Compensating: the program that undoes the log, and what it ends the task with."""

    def compensation_due(self) -> bool:
        """Whether this run is to compensate instead of running the workflow: the task
        was claimed in phase `compensation`, or its log shows compensation began."""
        return self.task.phase == TaskPhase.COMPENSATION or self._marker() is not None

    def _marker(self) -> StepRecord | None:
        """The `compensating` record, once written."""
        for rec in self.log.values():
            if rec.kind == StepKind.COMPENSATING:
                return rec
        return None

    def _compensable(self) -> list[StepRecord]:
        """The succeeded steps with a compensation, in step order (before the marker)."""
        marker = self._marker()
        return [
            rec
            for seq, rec in sorted(self.log.items())
            if (marker is None or seq < marker.seq)
            and rec.kind == StepKind.STEP
            and rec.status == StepStatus.SUCCEEDED
            and rec.meta.get("compensate")
        ]

    async def _requested_cause(self) -> dict[str, Any]:
        """The cause of a compensation asked for from outside, before any run wrote it:
        a cancellation, or an operator's compensation fork of an ended task."""
        if self.task.cancel_requested:
            return {"status": "cancelled", "decision": "cancel_requested", "error": None}
        original = None
        if self.task.forked_from is not None:
            original = await self.runtime.store.get_task(self.task.forked_from)
        error = original.error if original is not None else None
        status = "cancelled" if original and original.status == TaskStatus.CANCELLED else "failed"
        return {
            "status": status,
            "decision": "compensated",
            "error": None if error is None else error.to_json(),
        }

    async def _compensation(self, cause: dict[str, Any] | None) -> None:
        """The program: the marker (unless the log has it), then each compensation not
        yet done, latest step first. `self._undone` names the steps undone so far."""
        marker = self._marker()
        if marker is None:
            if cause is None:
                cause = await self._requested_cause()
            now = self.clock.now()
            marker = StepRecord(
                task_id=self.task.id,
                seq=max(self._seq, max(self.log, default=0)) + 1,
                name="compensating",
                kind=StepKind.COMPENSATING,
                status=StepStatus.SUCCEEDED,
                result=cause,
                started_at=now,
                finished_at=now,
            )
            await self._write(marker)
        for position, rec in enumerate(reversed(self._compensable()), 1):
            definition = self.runtime.step_lookup(rec.meta["compensate"])
            await self.run_step(
                marker.seq + position,
                definition.name,
                definition.fn,
                (rec.result,),
                {},
                definition.retry,
                definition.timeout,
                {"compensates": rec.seq, "step": rec.name},
                StepKind.COMPENSATION,
            )
            self._undone.append(rec.name)

    def _compensated_end(self) -> tuple[TaskStatus, TaskError | None, str, str | None]:
        """(status, error, decision, result) the task ends with once every compensation
        ran: its cause's, with the steps undone listed on the error; an operator's
        compensation fork succeeds, its result naming what it undid and of which task."""
        marker = self._marker()
        assert marker is not None
        cause = marker.result
        undone = list(self._undone)
        if cause["decision"] == "compensated":  # a fork whose whole job was to undo
            # (`tether.store.sql.control.REQUESTED_CAUSE`, or `_requested_cause`)
            of = {"compensated": undone, "of": self.task.forked_from}
            return TaskStatus.SUCCEEDED, None, "compensated", serde.dumps(of)
        if cause["status"] == "cancelled":
            error = TaskError.from_json(cause["error"]) or _error(
                "TaskCancelled", "cancelled; its completed steps were compensated", None
            )
            error.compensated = undone
            return TaskStatus.CANCELLED, error, cause["decision"], None
        error = TaskError.from_json(cause["error"]) or _error(
            "TaskFailed", "the task failed; its completed steps were compensated", None
        )
        error.compensated = undone
        return TaskStatus.FAILED, error, cause["decision"], None

    def _compensation_failed(self, step: str | None, kind: str, message: str) -> TaskError:
        """The task's error when a compensation failed for good: which one, why, and
        what the task was ending with."""
        marker = self._marker()
        cause = TaskError.from_json(marker.result["error"]) if marker is not None else None
        had = f"; the task had failed with {cause.type}: {cause.message}" if cause else ""
        what = "compensating" if step is None else f"compensation {step!r}"
        error = _error("CompensationFailed", f"{what} failed: {kind}: {message}{had}", step)
        error.compensated = list(self._undone)
        return error


def _error(kind: str, message: str, step: str | None) -> TaskError:
    return TaskError(kind, message, fingerprint(kind, message, step), step, permanent=True)
