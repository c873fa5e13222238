"""The one way times are written outside Python: RFC 3339 in UTC, to the microsecond.

    format_time(1718000000.25)            -> "2024-06-10T06:13:20.250000Z"
    parse_time("2024-06-10T08:13:20.25+02:00") -> 1718000000.25

Tether's records keep times as seconds since the Unix epoch (floats). The HTTP API's
responses, `tether.Client` and the CLI's `--json` output show them in this one format
(fixed width, so the strings sort like the times they name). Read back, a time is the
float nearest its microsecond, so writing it again gives the same text. Where a time is read
(query parameters, a submission's `deadline`), RFC 3339 with an offset is the format;
a number of epoch seconds is still accepted, for the scripts written before (ADR 65).
"""

from __future__ import annotations

import functools
import math
import re
from datetime import UTC, datetime
from fractions import Fraction
from typing import overload

LATEST = 32503680000.0
"""3000-01-01T00:00:00Z: times from here on are refused as out of range."""
EPOCH_TEXT = re.compile(
    # Whole seconds below LATEST (32503680000), digit by digit, then any fraction.
    r"(?:[0-9]{1,10}|[12][0-9]{10}|3[01][0-9]{9}|32[0-4][0-9]{8}|3250[0-2][0-9]{6}"
    r"|32503[0-5][0-9]{5}|325036[0-7][0-9]{4})(?:\.[0-9]+)?"
)
"""Epoch seconds written as text: up to 11 digits below `LATEST`, and a fraction (no
sign, exponent or space). One pattern for the parser and the OpenAPI document."""


@overload
def format_time(ts: float) -> str: ...


@overload
def format_time(ts: None) -> None: ...


def format_time(ts: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC (`2024-06-10T06:13:20.250000Z`); None stays None."""
    if ts is None:
        return None
    seconds, micros = divmod(_micros(ts), 1_000_000)
    return f"{_to_the_second(seconds)}.{micros:06d}Z"


@functools.lru_cache(maxsize=1024)
def _to_the_second(seconds: int) -> str:
    # Cached: the times of one response mostly fall in a few seconds.
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _micros(ts: float) -> int:
    """The microsecond `format_time` shows for `ts`: `ts` rounded half to even, done in
    integers so that it is exact (float arithmetic can round across the half)."""
    numerator, denominator = ts.as_integer_ratio()
    micros, rest = divmod(numerator * 1_000_000, denominator)
    if 2 * rest > denominator or (2 * rest == denominator and micros % 2):
        micros += 1
    return micros


def earliest_shown_as(ts: float) -> float:
    """The earliest time `format_time` shows as the microsecond of `ts` (or later).

    A filter `created_at >= earliest_shown_as(x)` keeps exactly the records whose time,
    as the API shows it, is at or after the microsecond `x` names: so a time read from a
    response and sent back as `created_after` finds the record it came from, and as
    `created_before` leaves it out, although the text rounds the float it shows."""
    micros = _micros(ts)
    # format_time shows M for the exact times from (M - 1/2) us on (M even: the half
    # itself rounds to M; M odd: it rounds down to the even M - 1).
    half_below = Fraction(2 * micros - 1, 2_000_000)
    bound = float(half_below)  # the float nearest to it
    if Fraction(bound) < half_below or (micros % 2 and Fraction(bound) == half_below):
        bound = math.nextafter(bound, math.inf)
    return bound


def parse_time(value: str | float | int) -> float:
    """Epoch seconds from an RFC 3339 time with an offset (`Z`, `+00:00`, `-05:00`) or
    from a number of epoch seconds (a number, or text of digits with an optional
    fraction: `EPOCH_TEXT`). Raises `ValueError` with a message fit to show the
    caller."""
    if isinstance(value, bool):
        raise ValueError("a time is RFC 3339 text, e.g. 2030-01-01T00:00:00Z")
    if isinstance(value, int | float):
        return _in_range(float(value))
    if not isinstance(value, str):
        raise ValueError("a time is RFC 3339 text, e.g. 2030-01-01T00:00:00Z")
    text = value
    if EPOCH_TEXT.fullmatch(text):  # epoch seconds, the older form
        return _in_range(float(text))
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
