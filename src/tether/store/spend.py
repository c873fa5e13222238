"""The spend part of the store interface: the ledger budgets are kept in (ADR 92).

One line per task, per tenant and UTC day, and per tenant's workflow and UTC day holds
what was spent, what running steps reserved, the configured limit and a limit an
approval granted. Reserving checks and books every line of a step in one atomic
statement, so steps in different processes cannot overspend together.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from enum import StrEnum

from tether.models import Approval, Cost, DaySpend, SpendLine
from tether.models.budgets import Scope


@dataclass(frozen=True)
class LineLimit:
    """A line's configured limit in the ledger's units (None: none in that unit)."""

    nanos: int | None = None
    """Nano-dollars."""
    tokens: int | None = None


@dataclass(frozen=True)
class SpendClaim:
    """What one attempt of a step asks of the ledger: reserve `estimate` on its task's
    line and its day's tenant and workflow lines, each within its limit."""

    task_id: str
    seq: int
    attempt: int
    """The task's attempt (claim) the reservation belongs to: once the task is no
    longer running at it, the reservation is dead and may be released."""
    tenant: str
    workflow: str
    day: str
    estimate: Cost
    limits: dict[Scope, LineLimit] = field(default_factory=dict)
    """The limits of the lines that have a budget; a line missing here has none."""


@dataclass(frozen=True)
class SpendReport:
    """What one attempt of a step spent, to settle against its reservation."""

    task_id: str
    seq: int
    attempt: int
    tenant: str
    workflow: str
    day: str
    """The day charged when the attempt had no reservation (else the reservation's)."""
    spent: Cost


class HoldOutcome(StrEnum):
    """What `hold_for_raise` decided for a step its budget cannot cover."""

    HOLD = "hold"
    """Wait: an approval to raise the line is pending (opened now or earlier)."""
    FAIL = "fail"
    """The raise was refused (rejected, or timed out): the step fails."""
    RETRY = "retry"
    """The line can cover it now (released meanwhile, or raised automatically)."""
    LOST = "lost"
    """The task is no longer running at this attempt: this run is not its own."""


@dataclass(frozen=True)
class HoldResult:
    """`hold_for_raise`'s answer, with the approval it concerns (if any)."""

    outcome: HoldOutcome
    approval: Approval | None = None


class SpendStore(abc.ABC):
    """The ledger's operations (a part of `Store`)."""

    @abc.abstractmethod
    async def reserve(self, claim: SpendClaim, now: float) -> SpendLine | None:
        """Reserve `claim.estimate` on each of its lines, all or none: None when it
        fits (a zero estimate only checks that some room is left, reserving nothing);
        else the state of a line that cannot cover it. A reservation the same step
        held before is released first."""

    @abc.abstractmethod
    async def release_dead(self, tenant: str, day: str, task_id: str | None, now: float) -> int:
        """Release the reservations whose task is no longer running at their attempt
        (a dead worker, a suspended task): of `task_id`, else of `tenant`'s `day`. How
        many were released."""

    @abc.abstractmethod
    async def settle(self, report: SpendReport, now: float) -> None:
        """Book what an attempt spent and release its reservation (when it still holds
        one at its attempt)."""

    @abc.abstractmethod
    async def hold_for_raise(
        self, claim: SpendClaim, scope: Scope, approval: Approval, now: float
    ) -> HoldResult:
        """The step of `claim` cannot be covered by its `scope` line: under the task's
        row lock, find the line's pending approval or open `approval` (its `seq` is
        assigned here) and register the task as waiting for the line; or say that the
        raise was refused, or that the line can cover it now."""

    @abc.abstractmethod
    async def task_spend(self, task_id: str, tenant: str) -> SpendLine | None:
        """What `tenant`'s task spent (None: nothing charged or reserved yet)."""

    @abc.abstractmethod
    async def day_spend(self, tenant: str, day: str) -> DaySpend:
        """What `tenant` spent on UTC `day`, in all and by workflow."""
