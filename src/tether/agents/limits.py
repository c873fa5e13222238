"""`AgentLimits`: how far one agent run may go, checked before each model call.

An *agent run* is one task: the model calls its workflow makes through
`tether.agents`. Before each call is sent, the run counts it (its turn) and, with a
wall-clock limit, reads the time with `ctx.now()` (a recorded value, so a replay
decides exactly as the first run did); past a limit the call raises
`AgentLimitExceeded` in the workflow, a permanent error, and no request is sent. A
replayed call that ran within its limits replays; it is never refused later.

The count is per task, whatever limits each call passes: a workflow that runs two
agents with their own limits runs each as a child workflow (`ctx.child`), a task of
its own.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tether.agents.errors import AgentLimitExceeded

if TYPE_CHECKING:
    from tether.engine.context import Context


@dataclass(frozen=True)
class AgentLimits:
    """Limits of one agent run (a task's model calls); None means no limit."""

    max_turns: int | None = None
    """Model calls the task may make, this one included."""
    max_seconds: float | None = None
    """Seconds from the task's first model call made under a wall-clock limit to the
    start of this one (time spent waiting, for an approval say, counts)."""
    max_tokens: int | None = None
    """Output tokens one call may ask for: the call's `max_tokens` when it gives none,
    and the most it may give."""

    def __post_init__(self) -> None:
        for name in ("max_turns", "max_seconds", "max_tokens"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"AgentLimits.{name} must be positive (or None)")


@dataclass
class _Tally:
    turns: int = 0
    first: datetime | None = None


_tallies: weakref.WeakKeyDictionary[Context, _Tally] = weakref.WeakKeyDictionary()
"""Each run's count, by its context: a resumed task has a new context and counts again
from its first call as it replays."""


def begin_turn(ctx: Context, limits: AgentLimits | None) -> int:
    """Count a model call of `ctx`'s task and check `limits`; returns its turn (1 for
    the first call). Raises `AgentLimitExceeded` past a limit."""
    tally = _tallies.setdefault(ctx, _Tally())
    tally.turns += 1
    if limits is None:
        return tally.turns
    if limits.max_turns is not None and tally.turns > limits.max_turns:
        raise AgentLimitExceeded(
            "max_turns",
            f"the agent run reached its limit of {limits.max_turns} model calls "
            f"(AgentLimits.max_turns); call {tally.turns} was not sent",
        )
    if limits.max_seconds is not None:
        now = ctx.now()
        if tally.first is None:
            tally.first = now
        elapsed = (now - tally.first).total_seconds()
        if elapsed > limits.max_seconds:
            raise AgentLimitExceeded(
                "max_seconds",
                f"the agent run has run {elapsed:.0f} s since its first model call, past "
                f"its limit of {limits.max_seconds:g} s (AgentLimits.max_seconds); "
                f"call {tally.turns} was not sent",
            )
    return tally.turns


def apply_max_tokens(
    request: dict[str, Any], limits: AgentLimits | None, names: tuple[str, ...]
) -> None:
    """Give `request` the limits' `max_tokens` under `names[0]` when it sets none of
    `names`, and refuse one that asks for more (`AgentLimitExceeded`)."""
    if limits is None or limits.max_tokens is None:
        return
    given = [(n, request[n]) for n in names if request.get(n) is not None]
    if not given:
        request[names[0]] = limits.max_tokens
        return
    for name, value in given:
        if isinstance(value, int) and value > limits.max_tokens:
            raise AgentLimitExceeded(
                "max_tokens",
                f"{name}={value} is over the agent run's limit of {limits.max_tokens} "
                f"output tokens per call (AgentLimits.max_tokens)",
            )
