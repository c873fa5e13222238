"""Children: starting other workflows as tasks of their own, and waiting for them.

A child's start is one entry of the parent's step log (kind `child`): written
`pending` with the child's id once the child is stored, and given the child's outcome
once the parent learns that it ended (succeeded: its result; failed or cancelled: a
failed entry, which a re-run of the parent does not reuse). The child's idempotency key
is the parent's id and the call site, so a parent that crashed after storing a child
but before recording it finds the same child on replay instead of starting another.

Starts made in one turn of the event loop (a fan-out in a comprehension) are stored in
one submission. Waiting for a child is a wait like the others (ADR 59): the branch
blocks, and once the whole workflow is quiescent the task suspends (reason `child`);
the child's end queues it again, and the replay reads the outcomes of the children
that ended, all in one query.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import TypeAdapter

from tether.engine.children import ChildHandle, ChildOptions
from tether.engine.registry import WorkflowFn, result_adapter, workflow_name
from tether.engine.run.state import LeaseLost
from tether.engine.run.waits import RunWaits, Wait
from tether.errors import ChildFailed, StoreUnavailable, fingerprint
from tether.models import StepKind, StepRecord, StepStatus, Task, TaskError, WaitReason
from tether.store.base import NewTask

_Start = tuple[int, NewTask, "asyncio.Future[str]"]


class RunChildren(RunWaits):
    """`ctx.start_child` and `ctx.child`: child tasks, started once per call site."""

    def start_child(
        self, seq: int, workflow: str | WorkflowFn, input: Any, options: ChildOptions
    ) -> ChildHandle[Any]:
        """Start (or, on replay, find) the child of call site `seq`; no await: the start
        is stored in the background, with the other starts of this loop turn."""
        name = workflow_name(workflow)
        rec = self._replayed(seq, name, StepKind.CHILD)
        loop = asyncio.get_running_loop()
        started: asyncio.Future[str] = loop.create_future()
        started.add_done_callback(_retrieved)
        self._has_children = True
        if rec is not None:
            started.set_result(rec.meta["child_id"])
        else:
            # Validated now, so a bad input or an unknown workflow raises at the call.
            new = self.runtime.child_task(self.task, seq, workflow, input, options)
            self._starts.append((seq, new, started))
            self._in_flight += 1
            if self._starting is None:
                self._starting = loop.create_task(self._start_queued())
        adapter = None if isinstance(workflow, str) else result_adapter(workflow)
        return ChildHandle(self, seq, name, started, adapter)

    async def _start_queued(self) -> None:
        """Store the children queued in this loop turn, then their pending entries."""
        batch: list[_Start] = self._starts
        self._starts, self._starting = [], None
        try:
            await self._commit_held()  # what the workflow did before is durable first
            try:
                tasks = await self.runtime.start_children([new for _, new, _ in batch])
            except StoreUnavailable:
                self._lost = True  # stop here: the replay finds the children by their keys
                raise LeaseLost(self.task.id) from None
            now = self.clock.now()
            records = [
                StepRecord(
                    task_id=self.task.id,
                    seq=seq,
                    name=new.workflow,
                    kind=StepKind.CHILD,
                    status=StepStatus.PENDING,
                    started_at=now,
                    meta={"child_id": task.id, "workflow": new.workflow},
                )
                for (seq, new, _), task in zip(batch, tasks, strict=True)
            ]
            await asyncio.gather(*(self._write(r) for r in records))
            for (_, _, fut), task in zip(batch, tasks, strict=True):
                fut.set_result(task.id)
        except BaseException as exc:
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(
                        exc if isinstance(exc, Exception | LeaseLost) else LeaseLost()
                    )
            if isinstance(exc, Exception):
                # An idempotency conflict (the call site started another child before)
                # or a refused child: the task fails, whether or not it awaits it.
                self._fatal = exc
                if self._wf_task is not None:
                    self._wf_task.cancel()
            elif not isinstance(exc, LeaseLost):
                raise
        finally:
            self._in_flight -= len(batch)
            self._check_quiescent()

    async def settle_starts(self) -> None:
        """Wait until the starts made so far are stored (before the run concludes)."""
        while self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)

    # outcomes ---------------------------------------------------------------------------
    def fetch_ended_children(self) -> asyncio.Future[None]:
        """Read (once per run) the children that ended and whose outcome this log lacks,
        and record each outcome; started when the run begins if its log has children
        still pending, else at the first wait for a child."""
        if self._ended_fetch is None:
            self._in_flight += 1
            self._ended_fetch = asyncio.ensure_future(self._record_ended())
            self._ended_fetch.add_done_callback(_retrieved)
        return self._ended_fetch

    async def _record_ended(self) -> None:
        try:
            try:
                ended = await self.runtime.store.ended_children(self.task.id)
            except StoreUnavailable:
                self._lost = True
                raise LeaseLost(self.task.id) from None
            writes = []
            for seq, child in sorted(ended.items()):
                rec = self.log.get(seq)
                if (
                    rec is not None
                    and rec.kind == StepKind.CHILD
                    and rec.status == StepStatus.PENDING
                ):
                    writes.append(self._write(_outcome_record(rec, child, self.clock.now())))
            await asyncio.gather(*writes)
        finally:
            self._in_flight -= 1
            self._check_quiescent()

    async def child_result(self, seq: int, name: str, adapter: TypeAdapter[Any] | None) -> Any:
        """The outcome of the child of call site `seq` (started): its result, or
        `ChildFailed`; blocks this branch while the child runs."""
        rec = self.log[seq]
        if rec.status == StepStatus.PENDING:
            await self.fetch_ended_children()
            rec = self.log[seq]
        if rec.status == StepStatus.PENDING:
            await self._block(seq, Wait(WaitReason.CHILD, None))
        outcome = rec.result or {}
        if rec.status == StepStatus.FAILED:
            error = outcome.get("error")
            raise ChildFailed(
                outcome.get("child_id") or rec.meta.get("child_id", ""),
                name,
                outcome.get("status", "failed"),
                TaskError.from_json(error) if error else None,
            )
        value = outcome.get("result")
        return value if adapter is None else adapter.validate_python(value)


def _outcome_record(rec: StepRecord, child: Task, now: float) -> StepRecord:
    """The pending entry `rec` given the outcome of `child` (which ended)."""
    outcome: dict[str, Any] = {"child_id": child.id, "status": str(child.status)}
    error = None
    if child.status == "succeeded":
        outcome["result"] = child.result
    else:
        outcome["error"] = None if child.error is None else child.error.to_json()
        failure = ChildFailed(child.id, rec.name, str(child.status), child.error)
        error = TaskError(
            type="ChildFailed",
            message=str(failure),
            fingerprint=fingerprint("ChildFailed", str(failure), rec.name),
            step=rec.name,
        )
    return StepRecord(
        task_id=rec.task_id,
        seq=rec.seq,
        name=rec.name,
        kind=rec.kind,
        status=StepStatus.SUCCEEDED if error is None else StepStatus.FAILED,
        result=outcome,
        error=error,
        started_at=rec.started_at,
        finished_at=now,
        meta=rec.meta,
    )


def _retrieved(fut: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen: a handle that is never awaited must not make
    asyncio report it (the run reports what matters itself)."""
    if not fut.cancelled():
        fut.exception()
