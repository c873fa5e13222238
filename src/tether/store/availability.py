"""Whether a store can use its database now, as its own operations found it (ADR 71).

A store marks its database *lost* when an operation fails because the database cannot
be reached or written (and only then: a constraint violation says nothing about it),
and *restored* when it can be used again. Each change is logged once, with how long the
outage lasted; nothing else in Tether logs an operation that failed for that reason
above DEBUG (`failure_level`), so an outage is two lines in the log, not a line per
request, claim and heartbeat. Waiters (`wait_reachable`) resume the moment it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time

from tether.errors import StoreUnavailable


class Availability:
    """The database's state as this process sees it: reachable, or lost since when and
    why. Changed on the event loop only."""

    def __init__(self, where: str, log: logging.Logger) -> None:
        self.where = where
        """The database, for log lines and messages (no credentials)."""
        self._log = log
        self.reason: str | None = None
        """Why the database is unreachable (None while reachable): the driver's reason
        alone, without host or credentials, so that `/readyz` may show it to anyone."""
        self.lost_at: float | None = None
        """`time.monotonic()` when it was lost (None while reachable)."""
        self._back: asyncio.Event | None = None

    @property
    def reachable(self) -> bool:
        return self.reason is None

    def lost(self, reason: str) -> None:
        """The database cannot be used: log it, unless it was already lost."""
        if self.reason is not None:
            self.reason = reason  # the latest cause is the one worth showing
            return
        self.reason, self.lost_at = reason, time.monotonic()
        if self._back is not None:
            self._back.clear()
        self._log.warning("database %s unavailable: %s", self.where, reason)

    def restored(self) -> None:
        """The database answers again: log it once, and wake every waiter."""
        if self.reason is None:
            return
        down = time.monotonic() - (self.lost_at or time.monotonic())
        self.reason, self.lost_at = None, None
        if self._back is not None:
            self._back.set()
        self._log.warning("database %s available again after %.1fs", self.where, down)

    def error(self) -> StoreUnavailable:
        """The error an operation raises while the database is lost."""
        reason = self.reason or "unavailable"
        return StoreUnavailable(f"the database {self.where} is unavailable: {reason}", reason)

    async def wait_reachable(self, timeout: float) -> bool:
        """Wait until the database is reachable, at most `timeout` seconds; say whether."""
        if self.reason is None:
            return True
        if self._back is None:
            self._back = asyncio.Event()
        try:
            await asyncio.wait_for(self._back.wait(), timeout)
        except TimeoutError:
            return False
        return True


def failure_level(exc: BaseException) -> int:
    """The log level for a background loop's failed round: DEBUG when the database is
    unreachable (its store logged that once already), WARNING for anything else."""
    return logging.DEBUG if isinstance(exc, StoreUnavailable) else logging.WARNING


__all__ = ["Availability", "failure_level"]
