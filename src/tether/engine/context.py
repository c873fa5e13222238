"""`Context`: what a workflow function receives, and the current-step information."""

from __future__ import annotations

import contextvars
import random as _random
import uuid as _uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from tether import serde
from tether.engine.children import ChildHandle, ChildOptions, ParentPolicy
from tether.engine.registry import compensation_name
from tether.models import Cost, Notification, StepKind, Task
from tether.retry import RetryPolicy

if TYPE_CHECKING:
    from tether.agents.prices import PriceTable
    from tether.engine.run import TaskRun

T = TypeVar("T")


@dataclass(frozen=True)
class StepInfo:
    """Facts about the step being executed, for the code inside it."""

    task_id: str
    tenant: str
    seq: int
    name: str
    attempt: int
    idempotency_key: str
    """Stable across retries and replays of this step: pass it to external APIs."""
    notes: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """What this attempt added with `annotate` (kept on the record if it ends the step)."""

    def annotate(self, **fields: Any) -> None:
        """Add `fields` to this step's record `meta`, and so to its `step.succeeded` or
        `step.failed` event: what the step learnt while it ran (a model call's usage,
        for one). The values must be JSON-able; a later call replaces a field. The
        fields of the attempt that ends the step are kept; a retried attempt's are not.
        Raises TypeError for a value that cannot be stored."""
        serde.dumps(fields)  # refused here, in the step, not later in the commit
        self.notes.update(fields)

    def charge(self, usd: float = 0.0, tokens: int = 0) -> Cost:
        """Report spend of this attempt: `usd` dollars and `tokens` tokens, added to
        what it reported before (its `meta` `spend`). When the attempt ends, it is
        booked on the task's, the tenant's and the workflow's budgets against what the
        step reserved (docs/flow-control.md). Returns the attempt's total so far.
        Raises ValueError for a negative or non-finite amount."""
        total = Cost.from_json(self.notes.get(SPEND_KEY)) + Cost(usd, tokens)
        self.notes[SPEND_KEY] = total.to_json()
        return total


SPEND_KEY = "spend"
"""The key of a step's `meta` that holds what its attempt reported spending (`Cost`)."""
ESTIMATE_KEY = "estimate"
"""The key of a step's `meta` that holds what it declared it may spend (`Cost`)."""


_current_step: contextvars.ContextVar[StepInfo | None] = contextvars.ContextVar(
    "tether_current_step", default=None
)
_current_context: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "tether_current_context", default=None
)


def current_step() -> StepInfo | None:
    """The step running in this context, or None outside steps."""
    return _current_step.get()


def current_context() -> Context | None:
    """The workflow context of the running workflow, or None outside workflows (and
    inside step functions, so that a step calling a step just calls a function)."""
    return _current_context.get()


@dataclass(frozen=True)
class Decision:
    """The outcome of `ctx.approval(...)`."""

    approved: bool
    status: str
    """approved or rejected."""
    resolution: str
    """Who decided: reviewer, auto (policy), sampled (auto-approved by sampling), timeout."""
    reviewers: list[str]
    reason: str | None = None
    changes: dict[str, Any] | None = None
    """Edits made by the approver ("approve with changes")."""
    approval_id: str | None = None


class Context:
    """The durable API a workflow uses. Everything recorded here replays identically."""

    def __init__(self, run: TaskRun) -> None:
        self._run = run

    @property
    def task(self) -> Task:
        """The task being run (id, tenant, attempt, correlation id, ...)."""
        return self._run.task

    @property
    def task_id(self) -> str:
        return self._run.task.id

    @property
    def tenant(self) -> str:
        return self._run.task.tenant

    @property
    def attempt(self) -> int:
        """How many times this task has been started (claimed), this time included."""
        return self._run.task.attempt

    @property
    def model_prices(self) -> PriceTable:
        """The prices model calls (`tether.agents`) are costed at: the built-in table,
        the `model_prices` setting and `app.model_prices.set(...)` on top."""
        return self._run.runtime.model_prices

    @property
    def idempotency_key(self) -> str:
        """The idempotency key of the step running now (see `StepInfo`)."""
        info = _current_step.get()
        if info is None:
            raise RuntimeError("ctx.idempotency_key is only available inside a step")
        return info.idempotency_key

    def charge(self, usd: float = 0.0, tokens: int = 0) -> Cost:
        """Inside a step: report that it spent `usd` dollars and `tokens` tokens
        (`StepInfo.charge`; model calls through `tether.agents` charge by themselves).
        Returns the attempt's total so far. Raises RuntimeError outside a step."""
        info = _current_step.get()
        if info is None:
            raise RuntimeError("ctx.charge is only available inside a step")
        return info.charge(usd, tokens)

    def step(
        self,
        name: str,
        fn: Callable[..., T] | Callable[..., Awaitable[T]],
        *args: Any,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        meta: dict[str, Any] | None = None,
        compensate: Callable[..., Any] | str | None = None,
        integration: str | None = None,
        queue: str | None = None,
        estimate: Cost | None = None,
        **kwargs: Any,
    ) -> Awaitable[T]:
        """Run `fn(*args, **kwargs)` as a durable step named `name`.

        The sequence number is taken now, at the call, so steps started together with
        `asyncio.gather` replay in the same order. The outcome is committed before the
        returned awaitable completes. Sync functions run in a thread.

        `compensate` (an `@app.step` function or its name) undoes the step: if the task
        fails, or is cancelled with compensation, the compensations of its succeeded
        steps run latest first, each called with its step's recorded result, each a
        durable step (docs/sagas.md).

        `integration` names the outside system the step calls (`"crm"`; a model call
        names its provider): rate limits, circuit breakers and step concurrency limits
        key on it (docs/flow-control.md). It is kept in the step's `meta`.

        `queue` makes the step run on workers of that queue (GPU machines, the
        workers an integration allows): a worker that does not serve it hands the task
        there, and the step after it goes back to the task's own queue (ADR 93). Kept
        in `meta` too.

        `estimate` is what one attempt may spend (`Cost(usd=, tokens=)`): before it
        runs, it is reserved on the task's and tenant's budgets, so that steps running
        together cannot overspend them; a budget that cannot cover it makes the step
        wait (reason `budget`) or fail (`BudgetExceeded`). The step reports what it
        really spent with `ctx.charge`. It is kept in the step's `meta`.
        """
        if integration is not None:
            meta = {**(meta or {}), "integration": integration}
        if queue is not None:
            meta = {**(meta or {}), "queue": queue}
        if estimate is not None:
            meta = {**(meta or {}), ESTIMATE_KEY: estimate.to_json()}
        if compensate is not None:
            undo = compensation_name(compensate)
            self._run.runtime.step_lookup(undo)  # unknown: an error here, not when undoing
            meta = {**(meta or {}), "compensate": undo}
        seq = self._run.next_seq()
        return self._run.run_step(seq, name, fn, args, kwargs, retry, timeout, meta)

    def now(self) -> datetime:
        """The current time (UTC), recorded: replay returns the same value."""
        value = self._run.record_value(StepKind.NOW, "now", lambda: self._run.clock.now())
        return datetime.fromtimestamp(float(value), UTC)

    def uuid(self) -> _uuid.UUID:
        """A random UUID, recorded: replay returns the same value."""
        return _uuid.UUID(self._run.record_value(StepKind.UUID, "uuid", lambda: str(_uuid.uuid4())))

    def random(self) -> float:
        """A random float in [0, 1), recorded: replay returns the same value."""
        return float(self._run.record_value(StepKind.RANDOM, "random", _random.random))

    async def sleep(self, duration: float | timedelta) -> None:
        """Sleep durably: the task waits (holding no worker slot) and resumes after
        `duration`, across restarts."""
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
        seq = self._run.next_seq()
        await self._run.sleep(seq, self._run.clock.now() + float(seconds))

    async def sleep_until(self, when: datetime) -> None:
        """Sleep durably until the given time (timezone-aware; naive means UTC)."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seq = self._run.next_seq()
        await self._run.sleep(seq, when.timestamp())

    async def wait_for_signal(self, name: str, timeout: float | timedelta | None = None) -> Any:
        """Wait for the next signal called `name` and return its payload.

        Signals sent before the wait are kept and consumed in order. Raises
        `TimeoutError` when `timeout` passes first.
        """
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        seq = self._run.next_seq()
        return await self._run.wait_for_signal(seq, name, seconds)

    async def approval(
        self,
        *,
        summary: str,
        risk: str = "medium",
        evidence: Sequence[Any] = (),
        impact: str | None = None,
        rollback: str | None = None,
        timeout: float | timedelta | None = None,
        on_timeout: Literal["reject", "approve"] = "reject",
        name: str = "approval",
    ) -> Decision:
        """Ask for human approval and wait for the decision.

        The risk policy decides what `risk` needs: auto-approval, one approver, two
        distinct approvers, or review of a sampled share. The task waits holding no
        worker slot; after `timeout` the `on_timeout` outcome applies.
        """
        if on_timeout not in ("reject", "approve"):
            raise ValueError("on_timeout must be 'reject' or 'approve'")
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        seq = self._run.next_seq()
        request = {
            "summary": summary,
            "evidence": list(evidence),
            "impact": impact,
            "rollback": rollback,
        }
        return await self._run.approval(seq, name, risk, request, seconds, on_timeout)

    def start_child(
        self,
        workflow: str | Callable[..., Awaitable[Any]],
        input: Any = None,
        *,
        version: int | None = None,
        queue: str | None = None,
        priority: int | None = None,
        deadline: float | timedelta | None = None,
        correlation_id: str | None = None,
        on_parent_end: ParentPolicy = "cancel",
    ) -> ChildHandle[Any]:
        """Start `workflow` (its name, or its registered function) with `input` as a
        child task, and return its handle at once; await the handle for the child's
        result (`asyncio.gather(*handles)` for many), or never, to let it run.

        The child runs as a task of its own, in this task's tenant, with its own steps,
        retries and waits; awaiting it suspends this task (no worker slot held) until
        it ends, and raises `ChildFailed` if it failed or was cancelled. The start is
        recorded once per call site: replays, and a crash between storing the child and
        recording it, find the same child. When this task ends first, the child is
        cancelled (`on_parent_end="cancel"`) or left to run (`"abandon"`). Options
        default to the child workflow's (`version`, `queue`, `deadline` in seconds
        from now) or to this task's (`priority`, `correlation_id`). An unknown workflow
        or a bad input raises here, at the call.
        """
        if on_parent_end not in ("cancel", "abandon"):
            raise ValueError("on_parent_end must be 'cancel' or 'abandon'")
        seconds = deadline.total_seconds() if isinstance(deadline, timedelta) else deadline
        options = ChildOptions(version, queue, priority, seconds, correlation_id, on_parent_end)
        seq = self._run.next_seq()
        return self._run.start_child(seq, workflow, input, options)

    async def child(
        self,
        workflow: str | Callable[..., Awaitable[T]],
        input: Any = None,
        *,
        version: int | None = None,
        queue: str | None = None,
        priority: int | None = None,
        deadline: float | timedelta | None = None,
        correlation_id: str | None = None,
        on_parent_end: ParentPolicy = "cancel",
    ) -> T:
        """Run `workflow` as a child task and return its result (`start_child`, then
        await it); raises `ChildFailed` if the child failed or was cancelled."""
        handle = self.start_child(
            workflow,
            input,
            version=version,
            queue=queue,
            priority=priority,
            deadline=deadline,
            correlation_id=correlation_id,
            on_parent_end=on_parent_end,
        )
        result: T = await handle
        return result

    async def emit(self, event: str, payload: Any = None, *, name: str | None = None) -> list[str]:
        """Publish `event` with `payload`, durably, once per call site: each workflow
        subscribed to it (`@app.workflow(on=event, when=...)`) starts with `payload` as
        its input, in this task's tenant and with its correlation id. Returns the ids of
        the tasks started.

        The publication is a step (named `name`, default `emit:<event>`): replayed from
        the log, and its idempotency key is the event's, so an emitter retried,
        replayed or re-run (ADR 63) starts no subscriber twice (docs/pipelines.md)."""
        run = self._run

        async def publish() -> list[str]:
            return await run.runtime.emit_from(run.task, event, payload, self.idempotency_key)

        return await self.step(name or f"emit:{event}", publish, meta={"emit": event})

    async def notify(
        self,
        text: str,
        *,
        subject: str = "",
        link: str | None = None,
        channels: Sequence[str] | None = None,
        name: str = "notify",
        retry: RetryPolicy | None = None,
    ) -> list[str]:
        """Tell people something, durably: send `text` (email subject `subject`, plus
        `link`) on `channels`, else on those the notification routes give the `notify`
        trigger for this task's tenant and workflow. Returns the channels used.

        The send is a step named `name`: recorded in the step log, so a replay does not
        send again; retried like a step on transient failures (`retry`, else the
        workflow's policy), with the step's idempotency key as the email's Message-ID.
        """
        message = Notification(text=text, subject=subject, link=link)
        wanted = None if channels is None else list(channels)
        runtime, task = self._run.runtime, self._run.task

        async def send() -> list[str]:
            key = self.idempotency_key
            return await runtime.send_notification(task.tenant, task.workflow, message, wanted, key)

        meta = {"notify": "routes" if wanted is None else wanted}
        return await self.step(name, send, retry=retry, meta=meta)
