"""What one run knows: the claimed task, its log, and where the run stands.

`RunState` holds every field of a run; the other modules of `tether.engine.run` add
behaviour to it, one concern each (ADR 59). Constants and the two exceptions that
unwind a workflow live here, as everything else builds on them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from tether.clock import Clock
from tether.engine.registry import WorkflowDef
from tether.models import StepKind
from tether.store.base import Claimed, NewTask, StepWrite

if TYPE_CHECKING:
    from tether.engine.run.waits import Wait
    from tether.engine.runtime import Runtime
    from tether.engine.worker import Worker

INLINE_BACKOFF_MAX = 2.0
"""Retry backoffs up to this many seconds wait in place; longer ones suspend the task
(`waiting`/`retry_backoff`) and free the worker slot."""


HOLD_LIMIT = 0.05
"""Seconds a step result may wait for the workflow's next effect before it is committed
on its own (ADR 44)."""


class LeaseLost(BaseException):
    """This worker no longer holds the task (its lease expired and another took it).
    A BaseException so that workflow code's `except Exception` cannot swallow it."""


class Stop(BaseException):
    """Unwinds the workflow when the run must end (fatal replay error)."""


class RunState:
    """The fields of one run of one claimed task (behaviour: the subclasses)."""

    def __init__(self, claimed: Claimed, wf: WorkflowDef, worker: Worker) -> None:
        self.task = claimed.task
        self.log = claimed.steps
        self.signals = claimed.signals
        self.approvals = claimed.approvals
        self.wf = wf
        self.worker = worker
        self.runtime: Runtime = worker.runtime
        self.clock: Clock = worker.runtime.clock
        self._seq = 0
        self._in_flight = 0
        """Steps executing and commits awaited: while any, the run is not quiescent."""
        self._waits: dict[int, Wait] = {}
        """Blocked branches of the workflow, by sequence number."""
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
        self._compensating = False
        """The run drives the saga's compensation program, not the workflow (ADR 83)."""
        self._undone: list[str] = []
        """Steps whose compensation this run saw done (recorded or run), in order."""
        self._starts: list[tuple[int, NewTask, asyncio.Future[str]]] = []
        """Children started in this loop turn, to store together (`RunChildren`)."""
        self._starting: asyncio.Task[None] | None = None
        self._ended_fetch: asyncio.Future[None] | None = None
        self._has_children = any(r.kind == StepKind.CHILD for r in claimed.steps.values())
        """The task started children: its end may cancel some (ADR 82)."""
        self._cancel_requested = claimed.task.cancel_requested
        self._retries_used = sum(max(0, r.attempts - 1) for r in claimed.steps.values())
