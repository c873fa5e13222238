"""The one way times are written outside Python: RFC 3339 in UTC, to the microsecond.

    format_time(1718000000.25)            -> "2024-06-10T06:13:20.250000Z"
    parse_time("2024-06-10T08:13:20.25+02:00") -> 1718000000.25

Tether's records keep times as seconds since the Unix epoch (floats). The HTTP API's
responses, `tether.Client` and the CLI's `--json` output show them in this one format
(fixed width, so the strings sort like the times they name). Where a time is read
(query parameters, a submission's `deadline`), RFC 3339 with an offset is the format;
a number of epoch seconds is still accepted, for the scripts written before (ADR 65).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import overload

LATEST = 32503680000.0
"""3000-01-01T00:00:00Z: times from here on are refused as out of range."""

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@overload
def format_time(ts: float) -> str: ...


@overload
def format_time(ts: None) -> None: ...


def format_time(ts: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC (`2024-06-10T06:13:20.250000Z`); None stays None."""
    if ts is None:
        return None
    # fromtimestamp rounds to the nearest microsecond, so parse_time gives back the
    # float nearest that microsecond: within half a microsecond of `ts`.
    return datetime.fromtimestamp(ts, UTC).strftime(_FORMAT)


def parse_time(value: str | float | int) -> float:
    """Epoch seconds from an RFC 3339 time with an offset (`Z`, `+00:00`, `-05:00`) or
    from a number of epoch seconds (as a number or as text). Raises `ValueError` with a
    message fit to show the caller."""
    if isinstance(value, bool):
        raise ValueError("a time is RFC 3339 text, e.g. 2030-01-01T00:00:00Z")
    if isinstance(value, int | float):
        return _in_range(float(value))
    if not isinstance(value, str):
        raise ValueError("a time is RFC 3339 text, e.g. 2030-01-01T00:00:00Z")
    text = value.strip()
    try:
        return _in_range(float(text))  # epoch seconds, the older form
    except ValueError as exc:
        if "out of range" in str(exc):
            raise
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not an RFC 3339 time: {text[:40]!r} (e.g. 2030-01-01T00:00:00Z)"
        ) from None
    if when.tzinfo is None:
        raise ValueError("a time needs a UTC offset, e.g. 2030-01-01T00:00:00Z")
    try:
        seconds = when.timestamp()
    except (OverflowError, OSError, ValueError):
        raise ValueError("time out of range") from None
    return _in_range(seconds)


def _in_range(seconds: float) -> float:
    if not math.isfinite(seconds) or not 0 <= seconds < LATEST:
        raise ValueError("time out of range (1970 to 2999)")
    return seconds
