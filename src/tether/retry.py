"""Retry policies: how many attempts, and how long to wait between them, including how
long a server asks to be left alone (`Retry-After`)."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

RETRY_AFTER_MAX = 3600.0
"""Longest wait, in seconds, taken from a server's `Retry-After` (or `Transient(
retry_after=)`): a larger value, a misread epoch or a far date, is cut to an hour, so
one bad header cannot park a task for days. A hint over `INLINE_BACKOFF_MAX` of the
engine suspends the task (`waiting`/`retry_backoff`) like any long backoff."""


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value: delta-seconds (`"120"`, fractions
    accepted) or an HTTP-date (`"Wed, 21 Oct 2026 07:28:00 GMT"`, counted from `now`,
    epoch seconds, default the wall clock). A past date is 0; anything else unreadable
    (negative, not finite, not a date) is None. Not capped: see `retry_after_from_headers`."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # the obsolete asctime form has no zone: it is GMT too
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def retry_after_from_headers(headers: Any, now: float | None = None) -> float | None:
    """The wait a response's headers ask for, capped at `RETRY_AFTER_MAX`: the SDKs'
    `retry-after-ms` (milliseconds) when present and valid, else `Retry-After`. Any
    mapping with a case-insensitive `get` (httpx, requests, the SDKs' responses)."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    millis = get("retry-after-ms")
    if isinstance(millis, str):
        try:
            ms = float(millis)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return min(ms / 1000.0, RETRY_AFTER_MAX)
    value = get("retry-after")
    if not isinstance(value, str):
        return None
    seconds = parse_retry_after(value, now)
    return None if seconds is None else min(seconds, RETRY_AFTER_MAX)


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing step is retried. Only transient failures are retried."""

    max_attempts: int = 3
    """Attempts in all, the first included; 1 means no retry."""
    initial_interval: float = 1.0
    """Backoff before the second attempt, in seconds."""
    backoff_coefficient: float = 2.0
    """Each further backoff is the previous one times this."""
    max_interval: float = 300.0
    """Cap on any one backoff, in seconds."""
    jitter: float = 0.2
    """Random spread of each backoff, as a share of it (0.2 = plus or minus 20%)."""
    non_retryable: tuple[type[BaseException], ...] = field(default_factory=tuple)
    """Exception types never retried, whatever the classification says."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.initial_interval < 0 or self.max_interval < 0:
            raise ValueError("RetryPolicy intervals must not be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy.jitter must be between 0 and 1")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        base = self.initial_interval * self.backoff_coefficient ** (attempt - 1)
        base = min(base, self.max_interval)
        if self.jitter:
            spread = base * self.jitter
            base += (rng or random).uniform(-spread, spread)
        return max(0.0, min(base, self.max_interval))


@dataclass(frozen=True)
class RetryBudget:
    """Limits across all the retries of one task: attempts, wall time and money.

    Not to be confused with a spend budget (`tether.Budget`, `spend_budget=`), which
    stops or holds a task's steps once it has spent a limit: this one only decides
    whether a failed step is worth another attempt."""

    max_retries: int = 50
    """Retries (attempts after the first) summed over all steps of the task."""
    max_elapsed: timedelta | None = None
    """Wall time from the task's first start after which no retry is started."""
    max_usd: float | None = None
    """Dollars the task may have spent (its spend ledger line, the failing attempt's
    charges included) for a failed step to be retried; beyond it, no retry is started
    (reason `spend_budget_exhausted`). None: no limit."""

    def __post_init__(self) -> None:
        if self.max_usd is not None and not (math.isfinite(self.max_usd) and self.max_usd >= 0):
            raise ValueError("RetryBudget.max_usd must be a finite number of dollars, at least 0")


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)
