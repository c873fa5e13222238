"""The circuit-breaker part of the store interface (ADR 91): the breakers' rows, a
step entering a breaker that is not closed, a step's outcome, and operators' changes.
The semantics are `tether.store.sql.breakers`'; the gate that drives them is
`tether.flow.breakers`."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from tether.models import NotificationRecord
from tether.models.breakers import Breaker, BreakerPolicy

Announce = Callable[[Breaker], Sequence[NotificationRecord]]
"""The notifications a breaker that just opened calls for (trigger `circuit.opened`),
stored in the transaction that opened it."""


class Outcome(StrEnum):
    """What one attempt of a step meant for its integration's breaker."""

    SUCCESS = "success"
    FAILURE = "failure"
    """A transient failure: a timeout, a connection error, HTTP 429 or 5xx, `Transient`."""
    NEUTRAL = "neutral"
    """A permanent failure (a validation error, a 4xx, a bug in the step): it says
    nothing of the integration's health either way."""


@dataclass
class Entry:
    """What a step entering its integration's breakers may do."""

    go: bool
    probes: tuple[str, ...] = ()
    """The scopes of the half-open breakers it goes as a probe of: its outcome closes or
    reopens them."""
    until: float | None = None
    """When a held step asks again."""
    breakers: tuple[Breaker, ...] = ()
    """The breakers it met, as they stand now."""


@dataclass
class Moved:
    """What an outcome or an operator did to a breaker."""

    breaker: Breaker
    opened: bool = False
    """It went from closed to open (and the opening was announced)."""
    closed: bool = False
    queues: tuple[str, ...] = ()
    """The queues of the tasks it woke."""


class BreakerStore(abc.ABC):
    """The breakers' operations (a part of `Store`)."""

    @abc.abstractmethod
    async def list_breakers(self) -> list[Breaker]:
        """Every breaker row, of every scope (they are few: the processes cache them)."""

    @abc.abstractmethod
    async def enter_breaker(
        self,
        tenant: str,
        integration: str,
        policy: BreakerPolicy,
        task_id: str,
        seq: int,
        attempt: int,
        now: float,
    ) -> Entry:
        """Step `seq` of `tenant`'s task `task_id` (running as `attempt`) would call
        `integration`, one of whose breakers (the fleet's, the tenant's) is not closed:
        held until a time (and put in the breaker's line, to be woken when it closes),
        or let through, as a probe when a breaker is half-open."""

    @abc.abstractmethod
    async def breaker_outcome(
        self,
        tenant: str,
        integration: str,
        policy: BreakerPolicy,
        result: Outcome,
        now: float,
        announce: Announce,
        *,
        successes: int = 0,
        probe: tuple[str, int, int] | None = None,
    ) -> Moved:
        """Count a step's `result` (and `successes` earlier ones not written yet) on
        the breaker that counts `tenant`'s steps of `integration`; a `probe`'s (task,
        seq, attempt) outcome closes or reopens the half-open breaker of scope `tenant`
        it probed."""

    @abc.abstractmethod
    async def set_breaker(
        self,
        scope: str,
        integration: str,
        open: bool,
        by: str | None,
        reason: str | None,
        now: float,
        announce: Announce,
    ) -> Moved:
        """Open a breaker by hand (until closed by hand) or close it (waking the steps
        it held)."""
