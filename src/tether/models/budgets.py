"""Budgets and spend: limits in money and tokens, and what was spent against them.

A `Budget` caps spend in US dollars and/or tokens: per task (`spend_budget=` at submit
or on the workflow), per tenant per UTC day, and per tenant's workflow per UTC day.
Steps report what they spent (`ctx.charge`, and model calls automatically); a step that
declares an estimate (`Cost`) reserves it first, so concurrent steps cannot overspend
together (docs/flow-control.md, ADR 92). The ledger keeps one `SpendLine` per task, per
tenant-day and per tenant-workflow-day.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

OnExhausted = Literal["approve", "fail"]
"""What a step that finds its budget exhausted does: wait (reason `budget`) while an
approval to raise the budget is requested, or fail with `BudgetExceeded`."""

NANOS = 1_000_000_000
"""The ledger counts money in nano-dollars (integers): sums of prices such as 0.05 add
up exactly, and `spent + reserved <= limit` means what it says."""

SCOPES = ("task", "tenant", "workflow")
"""The kinds of ledger line: a task's, a tenant's day, a tenant's workflow's day."""

Scope = Literal["task", "tenant", "workflow"]


def to_nanos(usd: float) -> int:
    """Dollars as whole nano-dollars."""
    return round(usd * NANOS)


def from_nanos(nanos: int) -> float:
    """Nano-dollars as dollars."""
    return nanos / NANOS


def utc_day(at: float) -> str:
    """The UTC day (`YYYY-MM-DD`) of epoch seconds `at`: what day budgets count by."""
    return datetime.fromtimestamp(at, UTC).date().isoformat()


def day_end(day: str) -> float:
    """Epoch seconds when UTC day `day` ends (its budgets start again from zero)."""
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)
    return start.timestamp() + 86400.0


def check_day(day: str | date) -> str:
    """`day` as `YYYY-MM-DD` if it is one (or a `date`); else ValueError."""
    if isinstance(day, date):
        return day.isoformat()
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        raise ValueError(f"{day!r} is not a day (YYYY-MM-DD)") from None
    if parsed.isoformat() != day:  # 20261204 and other forms fromisoformat reads
        raise ValueError(f"{day!r} is not a day (YYYY-MM-DD)")
    return day


MAX_USD = 9e9
"""The largest amount of dollars a budget or cost may name (nano-dollars fit 64 bits)."""
MAX_TOKENS = 10**15
"""The largest number of tokens a budget or cost may name."""


def _usd(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number of dollars, not {value!r}")
    if value < 0:
        raise ValueError(f"{what} must not be negative")
    if value > MAX_USD:  # the ledger's nano-dollars are 64-bit integers
        raise ValueError(f"{what} must be at most {MAX_USD:.0e} dollars")
    return float(value)


def _tokens(value: Any, what: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number of tokens, not {value!r}")
    if value < 0:
        raise ValueError(f"{what} must not be negative")
    if value > MAX_TOKENS:
        raise ValueError(f"{what} must be at most {MAX_TOKENS:.0e}")
    return value


@dataclass(frozen=True)
class Cost:
    """An amount of spend: US dollars and tokens. What a step declares it may spend
    (`ctx.step(..., estimate=Cost(usd=0.02))`) and what it reports (`ctx.charge`)."""

    usd: float = 0.0
    tokens: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "usd", _usd(self.usd, "Cost.usd"))
        object.__setattr__(self, "tokens", _tokens(self.tokens, "Cost.tokens"))

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.usd + other.usd, self.tokens + other.tokens)

    @property
    def nanos(self) -> int:
        """`usd` in nano-dollars (the ledger's unit)."""
        return to_nanos(self.usd)

    def to_json(self) -> dict[str, Any]:
        return {"usd": self.usd, "tokens": self.tokens}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Cost:
        """The cost `data` describes (`{"usd": ..., "tokens": ...}`; missing: 0)."""
        if not data:
            return cls()
        return cls(usd=data.get("usd", 0.0) or 0.0, tokens=data.get("tokens", 0) or 0)


@dataclass(frozen=True)
class Budget:
    """A limit on spend, in dollars and/or tokens (None: no limit in that unit), and
    what a step does when it is exhausted: `approve` (wait, reason `budget`, while an
    approval to raise it is requested) or `fail` (`BudgetExceeded`)."""

    usd: float | None = None
    tokens: int | None = None
    on_exhausted: OnExhausted = "approve"

    def __post_init__(self) -> None:
        if self.usd is None and self.tokens is None:
            raise ValueError("a Budget limits usd, tokens or both")
        if self.usd is not None:
            object.__setattr__(self, "usd", _usd(self.usd, "Budget.usd"))
        if self.tokens is not None:
            object.__setattr__(self, "tokens", _tokens(self.tokens, "Budget.tokens"))
        if self.on_exhausted not in ("approve", "fail"):
            raise ValueError(
                f"Budget.on_exhausted must be 'approve' or 'fail', not {self.on_exhausted!r}"
            )

    def to_json(self) -> dict[str, Any]:
        return {"usd": self.usd, "tokens": self.tokens, "on_exhausted": self.on_exhausted}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Budget | None:
        """The budget `data` describes, or None for none. Raises ValueError (with what
        is wrong) for anything else than `usd`, `tokens` and `on_exhausted`."""
        if data is None:
            return None
        if not isinstance(data, Mapping):
            raise ValueError(f"a budget is a table of usd, tokens, on_exhausted, not {data!r}")
        unknown = sorted(set(data) - {"usd", "tokens", "on_exhausted"})
        if unknown:
            raise ValueError(f"unknown budget key(s): {', '.join(map(str, unknown))}")
        return cls(
            usd=data.get("usd"),
            tokens=data.get("tokens"),
            on_exhausted=data.get("on_exhausted", "approve"),
        )


@dataclass(frozen=True)
class SpendLine:
    """One line of the spend ledger: what a task, a tenant's day or a tenant's
    workflow's day spent, what running steps hold reserved, and the limit in force."""

    tenant: str
    scope: Scope
    subject: str
    """The task id (`task`), the workflow (`workflow`), or empty (`tenant`)."""
    day: str
    """The UTC day (`YYYY-MM-DD`) of a day line; empty for a task's line."""
    spent: Cost = field(default_factory=Cost)
    reserved: Cost = field(default_factory=Cost)
    """What steps running now reserved from their estimates (settled when they end)."""
    limit_usd: float | None = None
    """The limit in force: the configured one, or a higher one an approval granted
    (None: no limit in dollars, or no budget)."""
    limit_tokens: int | None = None
    approval_id: str | None = None
    """The latest approval asked to raise this line's limit."""
    updated_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "usd": self.spent.usd,
            "tokens": self.spent.tokens,
            "reserved_usd": self.reserved.usd,
            "reserved_tokens": self.reserved.tokens,
            "limit_usd": self.limit_usd,
            "limit_tokens": self.limit_tokens,
            "approval_id": self.approval_id,
        }

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, tenant: str, scope: Scope, subject: str, day: str
    ) -> SpendLine:
        """The inverse of `to_json` (the API's figures read back by the client)."""
        return cls(
            tenant=tenant,
            scope=scope,
            subject=subject,
            day=day,
            spent=Cost(data.get("usd") or 0.0, data.get("tokens") or 0),
            reserved=Cost(data.get("reserved_usd") or 0.0, data.get("reserved_tokens") or 0),
            limit_usd=data.get("limit_usd"),
            limit_tokens=data.get("limit_tokens"),
            approval_id=data.get("approval_id"),
        )


@dataclass(frozen=True)
class DaySpend:
    """A tenant's spend on one UTC day: its total and each workflow's."""

    tenant: str
    day: str
    total: SpendLine
    workflows: dict[str, SpendLine] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "day": self.day,
            "total": self.total.to_json(),
            "workflows": {name: line.to_json() for name, line in self.workflows.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DaySpend:
        tenant, day = str(data["tenant"]), str(data["day"])
        return cls(
            tenant=tenant,
            day=day,
            total=SpendLine.from_json(
                data["total"], tenant=tenant, scope="tenant", subject="", day=day
            ),
            workflows={
                name: SpendLine.from_json(
                    line, tenant=tenant, scope="workflow", subject=name, day=day
                )
                for name, line in (data.get("workflows") or {}).items()
            },
        )
