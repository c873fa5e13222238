"""What an application registers: workflows (several versions each), steps and inbound
hooks. `Tether` is a `Registration`; the decorators live here so the facade's module
stays about submitting, running and querying."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar, Unpack, overload

from tether.engine.context import current_context
from tether.engine.registry import Registry, StepDef, WorkflowDef, WorkflowFn
from tether.inbound import HookBook, HookDef, HookOptions, make_hook
from tether.retry import RetryBudget, RetryPolicy

P = ParamSpec("P")
R = TypeVar("R")


def seconds(value: float | timedelta | None) -> float | None:
    """Seconds, from a number of them or a `timedelta`."""
    return value.total_seconds() if isinstance(value, timedelta) else value


class Registration:
    """The registration half of `Tether`: `@app.workflow`, `@app.step`, `app.hook`."""

    workflows: Registry
    """The registered workflows, by name and version; as a mapping, each name's newest
    version."""
    step_defs: dict[str, StepDef]
    """Steps declared with `@app.step`, by name."""
    hooks: HookBook
    """Inbound signed webhooks by name (config file, then `hook`)."""

    def workflow(
        self,
        name: str | None = None,
        *,
        version: int = 1,
        queue: str = "default",
        retry: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        deadline: float | timedelta | None = None,
    ) -> Callable[[WorkflowFn], WorkflowFn]:
        """Register an `async def wf(ctx, ...)` as version `version` of a workflow.

        Several versions of one name may be registered at once, each its own function
        (or one function under several versions, stacking the decorator, when it
        branches on `ctx.task.workflow_version`). A task runs only on the version it
        was submitted with, and a worker claims only the versions registered here
        (ADR 64). `retry` is the default policy of its steps; `budget` caps retries
        across the whole task; `deadline` is the default time limit from submission.
        """

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
                )
            )
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
    ) -> Callable[[Callable[P, Any]], Callable[P, Awaitable[Any]]]: ...

    def step(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
    ) -> Any:
        """Declare a function as a durable step.

        Called inside a workflow, it runs as `ctx.step(name, fn, ...)` (sequence number
        taken at the call); called anywhere else, it is simply run.
        """

        def register(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
            step_name = name or func.__name__
            definition = StepDef(step_name, func, retry, seconds(timeout))
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
                        **kwargs,
                    )
                return _call_plain(func, args, kwargs)

            wrapper.__tether_step__ = definition  # type: ignore[attr-defined]
            return wrapper

        return register(fn) if fn is not None else register

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
