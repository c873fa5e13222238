"""`Cron`: the ticks of a cron expression in a time zone, as epoch seconds (croniter).

An expression has five fields (minute, hour, day of month, month, day of week), or six
with seconds last (croniter's order: `0 7 * * * 30` is 07:00:30), or is one of the
`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly` shorthands. Its fields name
wall-clock times in `tz`, and each wall-clock time a day has fires once (ADR 77):

- a time that does not exist that day (skipped by a spring-forward change, `30 1 * * *`
  in Europe/Lisbon on the last Sunday of March) fires at the first instant after the
  gap, the moment the clocks jump;
- a time that happens twice (repeated by a fall-back change) fires at its first
  occurrence only, so a daily job runs once that day and an hourly one leaves a
  two-hour gap, as the wall clock does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from tether.errors import InvalidSchedule

ALIASES = frozenset(
    {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}
)


@functools.lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (`InvalidSchedule` for an unknown one)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidSchedule("timezone", f"unknown time zone {name!r} (an IANA name)") from exc


def check_expression(expression: str) -> str:
    """`expression` with its spaces normalised, when it is one Tether accepts."""
    text = " ".join(expression.split())
    if text.lower() in ALIASES:
        return text.lower()
    if len(text.split(" ")) not in (5, 6) or not croniter.is_valid(text):
        raise InvalidSchedule(
            "cron",
            f"{expression!r} is not a cron expression: five fields (minute hour "
            "day-of-month month day-of-week), a sixth for seconds last, or @daily etc.",
        )
    return text


@dataclass(frozen=True)
class Cron:
    """A cron expression in a time zone; build it with `Cron.of`, which validates."""

    expression: str
    tz: str

    @classmethod
    def of(cls, expression: str, tz: str = "UTC") -> Cron:
        """The ticks of `expression` in `tz`; `InvalidSchedule` for either."""
        zone(tz)
        return cls(check_expression(expression), tz)

    def next_after(self, t: float) -> float:
        """The first tick strictly after epoch second `t`."""
        tz = zone(self.tz)
        when = float(croniter(self.expression, datetime.fromtimestamp(t, tz)).get_next(float))
        span = _repeated_span(when, tz)
        if span is None:
            return when
        # A wall time this day had already: go on from the end of the repeated span.
        _, end = span
        return self.next_after(max(t, end - 1))

    def prev_before(self, t: float) -> float:
        """The last tick strictly before epoch second `t`."""
        tz = zone(self.tz)
        when = float(croniter(self.expression, datetime.fromtimestamp(t, tz)).get_prev(float))
        span = _repeated_span(when, tz)
        if span is None:
            return when
        start, _ = span  # every tick in the span repeats one from before it
        return self.prev_before(min(t, start))


def _ambiguous(t: float, tz: ZoneInfo) -> tuple[float, float] | None:
    """The two instants of the wall time at `t` when it happens twice, else None."""
    wall = datetime.fromtimestamp(t, tz).replace(tzinfo=None)
    first = wall.replace(tzinfo=tz, fold=0).timestamp()
    second = wall.replace(tzinfo=tz, fold=1).timestamp()
    return (first, second) if first != second else None


def _repeated_span(when: float, tz: ZoneInfo) -> tuple[float, float] | None:
    """When `when` is the second occurrence of a wall time (a fall-back change repeated
    it): the span of instants [start, end) whose wall times all repeat earlier ones.
    None otherwise (the usual case, and first occurrences)."""
    both = _ambiguous(when, tz)
    if both is None or both[1] != when or both[0] >= when:
        return None
    delta = when - both[0]  # how far the clocks went back
    # Ambiguous from the change to `delta` after it: find the end by bisection (zone
    # changes fall on whole seconds).
    low, high = when, when + delta
    while high - low > 1:
        mid = (low + high) // 2
        if _ambiguous(mid, tz) is not None:
            low = mid
        else:
            high = mid
    return high - delta, high
