"""Child workflows as a workflow sees them: the options of a child, and its handle.

`ctx.start_child(workflow, input, ...)` starts another workflow as a task of its own
and returns a `ChildHandle` at once; awaiting the handle (or `ctx.child(...)`, which is
both in one) gives the child's result, or raises `ChildFailed`. The start is a durable
entry of the parent's step log, made once per call site (ADR 82).
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from tether.engine.run.children import RunChildren

T = TypeVar("T")

ParentPolicy = Literal["cancel", "abandon"]
"""What happens to a child still unfinished when its parent ends (succeeds, fails or
is cancelled): `cancel` it (the default), or `abandon` it to run on alone."""


@dataclass(frozen=True)
class ChildOptions:
    """How to start a child task. The tenant is always the parent's."""

    version: int | None = None
    """The child workflow's version (None: the newest registered)."""
    queue: str | None = None
    """The queue to run it on (None: the child workflow's own)."""
    priority: int | None = None
    """Its priority (None: the parent's)."""
    deadline: float | None = None
    """Seconds from its start to its deadline (None: the child workflow's default)."""
    correlation_id: str | None = None
    """Its correlation id (None: the parent's, so a whole tree shares one)."""
    on_parent_end: ParentPolicy = "cancel"
    """What happens to it when the parent ends first (see `ParentPolicy`)."""


class ChildHandle(Generic[T]):
    """A started child task. Await it (`await handle`, `asyncio.gather(*handles)`) for
    its result; `ChildFailed` when it failed or was cancelled."""

    def __init__(
        self,
        run: RunChildren,
        seq: int,
        workflow: str,
        started: asyncio.Future[str],
        adapter: TypeAdapter[Any] | None,
    ) -> None:
        self._run = run
        self._started = started
        self._adapter = adapter
        self.seq = seq
        """The call site: the position of the start in the parent's step log."""
        self.workflow = workflow
        """The child's workflow."""

    async def started(self) -> str:
        """Wait for the child's start to be recorded; returns the child's task id."""
        return await asyncio.shield(self._started)

    async def result(self) -> T:
        """The child's result, once it has ended (the parent waits meanwhile, holding
        no worker slot); raises `ChildFailed` when it failed or was cancelled."""
        await asyncio.shield(self._started)
        value: T = await self._run.child_result(self.seq, self.workflow, self._adapter)
        return value

    def __await__(self) -> Generator[Any, None, T]:
        return self.result().__await__()
