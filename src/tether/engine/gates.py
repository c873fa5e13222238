"""Step gates: the engine's one seam for flow control (ADR 87).

Before each attempt of a step, the run asks the gates of its runtime, in order, whether
the step may start now; the first that says no returns a `Hold` (the gates after it
are not asked, so they take nothing for a step that waits anyway): the branch parks with the hold's
reason (`rate_limit`, `circuit_open`, `budget`, ...) and the task is suspended, holding
no slot, until the hold's time; it then replays and asks again. After each attempt the
gates hear how it went (a breaker counts failures, a budget what the attempt spent, a
bucket the tokens a model call used). Gates keep their state in the store, so they
hold across every worker and server; the engine knows only this interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tether.models import AttemptError, Task, WaitReason


@dataclass(frozen=True)
class StepCall:
    """One attempt of a step, as a gate sees it."""

    task: Task
    seq: int
    name: str
    attempt: int
    integration: str | None
    """What outside system the step calls (`@app.step(integration=...)`; a model call's
    provider): the key rate limits, breakers and step concurrency limits go by."""
    meta: Mapping[str, Any] = field(default_factory=dict)
    """The step's declared `meta` (`estimate`: what a budget reserves for it)."""


@dataclass(frozen=True)
class Hold:
    """A gate's answer that a step may not start yet."""

    reason: WaitReason
    until: float
    """When to ask again (epoch seconds): the task is suspended until then."""


class StepGate(Protocol):
    """A flow-control policy consulted around every attempt of every step."""

    async def before(self, call: StepCall) -> Hold | None:
        """None if the attempt may start now; else how long it must wait, and why. An
        exception raised here is the attempt's failure (a budget that refuses the step
        raises `BudgetExceeded`): it is classified, recorded and retried (or not) like
        any other, and the gates are told of it."""
        ...

    async def after(
        self, call: StepCall, error: AttemptError | None, notes: dict[str, Any]
    ) -> None:
        """The attempt ended: `error` is None when it succeeded; `notes` is what it
        recorded with `StepInfo.annotate` (a model call's usage)."""
        ...
