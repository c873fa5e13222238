"""Retry policies: how many attempts, and how long to wait between them."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta


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
    """Limits across all the retries of one task."""

    max_retries: int = 50
    """Retries (attempts after the first) summed over all steps of the task."""
    max_elapsed: timedelta | None = None
    """Wall time from the task's first start after which no retry is started."""


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)
