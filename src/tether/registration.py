"""What an application registers: workflows (several versions each), steps, cron
schedules and inbound hooks. `Tether` is a `Registration`; the decorators live here so
the facade's module stays about submitting, running and querying."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar, Unpack, overload

from tether import serde
from tether.engine.context import current_context
from tether.engine.registry import (
    Concurrency,
    Fairness,
    Registry,
    StepDef,
    WorkflowDef,
    WorkflowFn,
    compensation_name,
)
from tether.errors import ConfigError
from tether.inbound import HookBook, HookDef, HookOptions, make_hook
from tether.models import Budget, Cost
from tether.models.schedules import DEFAULT_MAX_MISSED, MissedTicks, Schedule, ScheduleOrigin
from tether.pipelines import Predicate, Subscriptions
from tether.retry import RetryBudget, RetryPolicy
from tether.schedules.spec import ScheduleSpec

P = ParamSpec("P")
R = TypeVar("R")


def seconds(value: float | timedelta | None) -> float | None:
    """Seconds, from a number of them or a `timedelta`."""
    return value.total_seconds() if isinstance(value, timedelta) else value


@dataclass(frozen=True)
class DeclaredSchedule:
    """A schedule `@app.schedule` declared on workflow function `fn`: `spec` (with the
    workflow name left empty until `fn` is found registered) for `tenant`."""

    fn: WorkflowFn
    spec: ScheduleSpec
    tenant: str | None


class Registration:
    """The registration half of `Tether`: `@app.workflow`, `@app.step`, `@app.schedule`,
    `app.hook`."""

    workflows: Registry
    """The registered workflows, by name and version; as a mapping, each name's newest
    version."""
    step_defs: dict[str, StepDef]
    """Steps declared with `@app.step`, by name."""
    hooks: HookBook
    """Inbound signed webhooks by name (config file, then `hook`)."""
    schedule_decls: list[DeclaredSchedule]
    """Schedules declared with `@app.schedule`, in declaration order."""
    subscriptions: Subscriptions
    """Which workflows events start (`@app.workflow(on=...)`)."""

    def workflow(
        self,
        name: str | None = None,
        *,
        version: int = 1,
        queue: str = "default",
        retry: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        deadline: float | timedelta | None = None,
        on: str | Sequence[str] | None = None,
        when: Predicate | None = None,
        fairness: Fairness | None = None,
        concurrency: Concurrency | None = None,
        spend_budget: Budget | None = None,
        daily_budget: Budget | None = None,
    ) -> Callable[[WorkflowFn], WorkflowFn]:
        """Register an `async def wf(ctx, ...)` as version `version` of a workflow.

        Several versions of one name may be registered at once, each its own function
        (or one function under several versions, stacking the decorator, when it
        branches on `ctx.task.workflow_version`). A task runs only on the version it
        was submitted with, and a worker claims only the versions registered here
        (ADR 64). `retry` is the default policy of its steps; `budget` caps retries
        across the whole task (`RetryBudget`: attempts, wall time, spend); `deadline`
        is the default time limit from submission. `spend_budget` limits each task's
        spend in dollars and tokens (a submission's `spend_budget` replaces it), and
        `daily_budget` the spend of each tenant's tasks of it per UTC day
        (docs/flow-control.md).
        `on` subscribes it to one or more event types: each event (`app.emit`,
        `ctx.emit`) whose payload `when` accepts starts it once, with the payload as its
        input (docs/pipelines.md). `fairness` picks the key its tasks take turns by
        in their queue (default: the tenant); `concurrency` caps how many of them
        (per key) run at once (docs/flow-control.md).
        """
        if when is not None and on is None:
            raise ValueError("when= filters the events of on=: give on= too")

        def register(fn: WorkflowFn) -> WorkflowFn:
            self.workflows.add(
                WorkflowDef(
                    name=name or fn.__name__,
                    version=version,
                    fn=fn,
                    queue=queue,
                    retry=retry or RetryPolicy(),
                    budget=budget or RetryBudget(),
                    deadline=seconds(deadline),
                    fairness=fairness,
                    concurrency=concurrency,
                    spend_budget=spend_budget,
                    daily_budget=daily_budget,
                )
            )
            if on is not None:
                self.subscriptions.add(name or fn.__name__, on, when)
            return fn

        return register

    @overload
    def step(self, fn: Callable[P, Awaitable[R]], /) -> Callable[P, Awaitable[R]]: ...

    @overload
    def step(self, fn: Callable[P, R], /) -> Callable[P, Awaitable[R]]: ...

    @overload
    def step(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
        compensate: Callable[..., Any] | str | None = None,
        integration: str | None = None,
        queue: str | None = None,
        estimate: Cost | None = None,
    ) -> Callable[[Callable[P, Any]], Callable[P, Awaitable[Any]]]: ...

    def step(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
        compensate: Callable[..., Any] | str | None = None,
        integration: str | None = None,
        queue: str | None = None,
        estimate: Cost | None = None,
    ) -> Any:
        """Declare a function as a durable step.

        Called inside a workflow, it runs as `ctx.step(name, fn, ...)` (sequence number
        taken at the call); called anywhere else, it is simply run. `compensate` names
        the `@app.step` that undoes it, called with its result if the task fails or is
        cancelled with compensation (docs/sagas.md). `integration` names the outside
        system it calls, for flow control; `queue` the queue whose workers run it; and
        `estimate` what one attempt may spend, reserved on the budgets before it runs
        (`ctx.step`).
        """
        undo = None if compensate is None else compensation_name(compensate)

        def register(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
            step_name = name or func.__name__
            definition = StepDef(
                step_name,
                func,
                retry,
                seconds(timeout),
                queue=queue,
                compensate=undo,
                integration=integration,
                estimate=estimate,
            )
            self.step_defs[step_name] = definition

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Awaitable[Any]:
                ctx = current_context()
                if ctx is not None:
                    return ctx.step(
                        step_name,
                        func,
                        *args,
                        retry=definition.retry,
                        timeout=definition.timeout,
                        compensate=definition.compensate,
                        integration=definition.integration,
                        queue=definition.queue,
                        estimate=definition.estimate,
                        **kwargs,
                    )
                return _call_plain(func, args, kwargs)

            wrapper.__tether_step__ = definition  # type: ignore[attr-defined]
            return wrapper

        return register(fn) if fn is not None else register

    def schedule(
        self,
        cron: str,
        *,
        tz: str = "UTC",
        input: Any = None,
        name: str | None = None,
        missed: MissedTicks | str = MissedTicks.ONCE,
        max_missed: int = DEFAULT_MAX_MISSED,
        tenant: str | None = None,
    ) -> Callable[[WorkflowFn], WorkflowFn]:
        """Start the decorated workflow with `input` at every tick of `cron` in the IANA
        time zone `tz`, one task per tick however many workers and servers run.

            @app.schedule("0 7 * * *", tz="Europe/Lisbon", input={"region": "pt"})
            @app.workflow("report")
            async def report(ctx: Context, region: str) -> None: ...

        `cron` has five fields, or six with seconds last (`* * * * * *`: every second),
        or is `@daily` and the like. `name` (default: the workflow's name) is unique per
        `tenant` (default: the `tenant` setting). `missed` says what happens to ticks
        that passed while no scheduler ran: `skip` them, run `once` for the latest (the
        default), or run `all` of them, the newest `max_missed`. The schedule is stored
        when a worker or server of this app starts; pausing it (API, CLI) holds across
        restarts. Raises `InvalidSchedule` for a bad expression, zone, name or policy.
        See docs/schedules.md.
        """
        spec = ScheduleSpec(
            name=name or "",  # empty: the workflow's name, once `fn` is registered
            workflow="",
            cron=cron,
            timezone=tz,
            input=input,
            missed=missed,
            max_missed=max_missed,
        ).check(named=name is not None)

        def register(fn: WorkflowFn) -> WorkflowFn:
            self.schedule_decls.append(DeclaredSchedule(fn, spec, tenant))
            return fn

        return register

    def resolve_schedules(self, tenant: str, now: float) -> list[Schedule]:
        """The schedules declared with `@app.schedule`, as rows to store at `now` (of
        `tenant` unless they name theirs). Raises `ConfigError` for a declaration on a
        function no `@app.workflow` registered, or two of one name; `InputValidationError`
        for an input the workflow refuses."""
        rows: dict[tuple[str, str], Schedule] = {}
        for decl in self.schedule_decls:
            names = {wf.name for wf in self.workflows.definitions() if wf.fn is decl.fn}
            if len(names) != 1:
                what = getattr(decl.fn, "__qualname__", repr(decl.fn))
                raise ConfigError(
                    f"@app.schedule({decl.spec.cron!r}) is on {what}, which is registered "
                    f"as {len(names)} workflows (it must be one, with @app.workflow)"
                )
            (workflow,) = names
            encoded = self.workflows.lookup(workflow).encode_input(decl.spec.input)
            spec = replace(
                decl.spec,
                workflow=workflow,
                name=decl.spec.name or workflow,
                input=serde.loads(encoded),
            )
            row = spec.row(decl.tenant or tenant, now, origin=ScheduleOrigin.CODE, created_by=None)
            if (row.tenant, row.name) in rows:
                raise ConfigError(f"two @app.schedule declarations are named {row.name!r}")
            rows[row.tenant, row.name] = row
        return list(rows.values())

    def hook(self, name: str, *, secret: str, **options: Unpack[HookOptions]) -> HookDef:
        """Accept signed deliveries at `POST /v1/hooks/{name}` (Standard Webhooks,
        `secret` = `whsec_...`): each starts `workflow` with `input` (the body, a dotted
        path into it, or a function of it), or sends `signal` with `payload` to the task
        named by `task_id` (a dotted path or a function of body and headers) or the
        header `task_header`; as `tenant`. Once per webhook-id. See docs/api.md."""
        return self.hooks.add(make_hook(name, secret=secret, **options))


async def _call_plain(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = fn(*args, **kwargs)
    if asyncio.iscoroutine(result):
        result = await result
    return result
