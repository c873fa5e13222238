"""The one time format outside Python (`tether.models.times`): RFC 3339 UTC, to the
microsecond, read back to the float it came from."""

from __future__ import annotations

import math
import random
import re

import pytest

from tether.models.times import earliest_shown_as, format_time, parse_time

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.mark.parametrize("ts", [0.0, 1.0, 1718000000.25, 1718000000.3, 1799999999.999999, 4e9])
def test_format_is_rfc3339_utc_and_parses_back(ts: float) -> None:
    text = format_time(ts)
    assert RFC3339_UTC.match(text), text
    assert parse_time(text) == pytest.approx(ts, abs=5.1e-7)
    assert format_time(parse_time(text)) == text, "read back and written again: the same"


def test_a_shown_time_as_a_bound_finds_exactly_what_it_shows() -> None:
    """`earliest_shown_as` is the threshold of the time filters: every float at or above
    it shows at or after that microsecond, every float below it shows before."""
    rng = random.Random(7)
    samples = [rng.uniform(1e9, 4e9) for _ in range(5_000)]
    samples += [1718000000.3, 1718000000.0000005, 1.0000005, 2.5e-6, 1718000000.5]
    for ts in samples:
        text = format_time(ts)
        bound = earliest_shown_as(parse_time(text))
        assert bound <= ts, "the record a time was read from is at or after it"
        assert format_time(bound) == text
        below = math.nextafter(bound, -math.inf)
        assert format_time(below) < text, "the float just below shows an earlier microsecond"


def test_fixed_width_strings_sort_like_the_times() -> None:
    times = [1.5, 10.0, 999999999.0, 1718000000.000001, 1718000000.1]
    assert sorted(format_time(t) for t in times) == [format_time(t) for t in sorted(times)]
    assert format_time(1718000000.25) == "2024-06-10T06:13:20.250000Z"
    assert format_time(None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-06-10T06:13:20.25Z", 1718000000.25),
        ("2024-06-10T06:13:20.250000+00:00", 1718000000.25),
        ("2024-06-10T08:13:20.25+02:00", 1718000000.25),
        ("2024-06-10T01:13:20.25-05:00", 1718000000.25),
        ("2024-06-10 06:13:20Z", 1718000000.0),
        # epoch seconds, the earlier form, are still read
        ("1718000000.25", 1718000000.25),
        (1718000000, 1718000000.0),
        (1718000000.25, 1718000000.25),
    ],
)
def test_parse_accepts_offsets_and_epoch_seconds(text: str | float, expected: float) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2024-06-10T06:13:20", "needs a UTC offset"),
        ("2024-06-10", "needs a UTC offset"),
        ("tomorrow", "not an RFC 3339 time"),
        ("", "not an RFC 3339 time"),
        ("1969-12-31T23:59:59Z", "out of range"),
        ("3000-01-01T00:00:00Z", "out of range"),
        (-1, "out of range"),
        (float("nan"), "out of range"),
        ("inf", "not an RFC 3339 time"),
        # epoch seconds as text are digits and a fraction, nothing float() reads besides
        ("1e9", "not an RFC 3339 time"),
        ("1_718_000_000", "not an RFC 3339 time"),
        (" 1718000000", "not an RFC 3339 time"),
        ("-5", "not an RFC 3339 time"),
        (1e300, "out of range"),
        (True, "RFC 3339 text"),
    ],
)
def test_parse_refuses_what_it_cannot_place(value: str | float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_time(value)
