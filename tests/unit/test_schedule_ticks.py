"""Cron ticks in a time zone (the daylight-saving rules of ADR 77) and which ticks a
due schedule fires: on-time ticks always, missed ones by the `skip` / `once` / `all`
policy, with its cap."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tether.errors import InvalidSchedule
from tether.models.schedules import MissedTicks
from tether.schedules.cron import Cron
from tether.schedules.spec import ScheduleSpec
from tether.schedules.ticks import ON_TIME, plan, tick_key, upcoming


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def ticks(cron: Cron, start: float, n: int) -> list[str]:
    out, t = [], start
    for _ in range(n):
        t = cron.next_after(t)
        out.append(utc(t))
    return out


def test_a_daily_tick_follows_the_zone_across_summer_time() -> None:
    # Lisbon is UTC+0 in winter and UTC+1 in summer (from 2024-03-31 01:00 UTC).
    cron = Cron.of("0 7 * * *", "Europe/Lisbon")
    assert ticks(cron, at(2024, 3, 29, 12), 3) == [
        "2024-03-30 07:00:00",
        "2024-03-31 06:00:00",
        "2024-04-01 06:00:00",
    ]


def test_a_time_the_spring_change_skips_fires_when_the_clocks_jump() -> None:
    # 01:30 does not exist in Lisbon on 2024-03-31 (01:00 -> 02:00).
    cron = Cron.of("30 1 * * *", "Europe/Lisbon")
    assert ticks(cron, at(2024, 3, 29, 12), 3) == [
        "2024-03-30 01:30:00",
        "2024-03-31 01:00:00",  # 02:00 WEST, the end of the gap
        "2024-04-01 00:30:00",
    ]
    # New York: 02:30 does not exist on 2024-03-10.
    ny = Cron.of("30 2 * * *", "America/New_York")
    assert ticks(ny, at(2024, 3, 9, 12), 2) == ["2024-03-10 07:00:00", "2024-03-11 06:30:00"]


def test_a_time_the_autumn_change_repeats_fires_once() -> None:
    # 01:30 happens twice in Lisbon on 2024-10-27 (02:00 WEST -> 01:00 WET).
    cron = Cron.of("30 1 * * *", "Europe/Lisbon")
    assert ticks(cron, at(2024, 10, 25, 12), 3) == [
        "2024-10-26 00:30:00",
        "2024-10-27 00:30:00",  # the first 01:30 only
        "2024-10-28 01:30:00",
    ]
    t = at(2024, 10, 28, 12)
    back = []
    for _ in range(3):
        t = cron.prev_before(t)
        back.append(utc(t))
    assert back == ["2024-10-28 01:30:00", "2024-10-27 00:30:00", "2024-10-26 00:30:00"]


def test_wall_clock_hours_and_seconds_across_the_repeated_hour() -> None:
    hourly = Cron.of("0 * * * *", "Europe/Lisbon")
    assert ticks(hourly, at(2024, 10, 26, 22, 30), 4) == [
        "2024-10-26 23:00:00",
        "2024-10-27 00:00:00",  # 01:00 WEST; 01:00 WET repeats it
        "2024-10-27 02:00:00",
        "2024-10-27 03:00:00",
    ]
    every_second = Cron.of("* * * * * *", "Europe/Lisbon")
    assert ticks(every_second, at(2024, 10, 27, 0, 59, 58), 3) == [
        "2024-10-27 00:59:59",
        "2024-10-27 02:00:00",
        "2024-10-27 02:00:01",
    ]
    assert utc(every_second.prev_before(at(2024, 10, 27, 2, 0, 0))) == "2024-10-27 00:59:59"
    # In UTC nothing repeats: every hour fires.
    assert ticks(Cron.of("0 * * * *"), at(2024, 10, 27, 0, 30), 2) == [
        "2024-10-27 01:00:00",
        "2024-10-27 02:00:00",
    ]


def test_six_fields_put_the_seconds_last_and_shorthands_work() -> None:
    assert ticks(Cron.of("0 7 * * * 30"), at(2024, 1, 1), 1) == ["2024-01-01 07:00:30"]
    assert ticks(Cron.of("@daily"), at(2024, 1, 1, 1), 1) == ["2024-01-02 00:00:00"]
    assert Cron.of("  0   7 * * *  ").expression == "0 7 * * *"


@pytest.mark.parametrize(
    ("cron", "tz", "field"),
    [
        ("61 * * * *", "UTC", "cron"),
        ("* * * *", "UTC", "cron"),
        ("* * * * * * *", "UTC", "cron"),
        ("every day", "UTC", "cron"),
        ("0 7 * * *", "Mars/Olympus", "timezone"),
        ("0 7 * * *", "../etc/passwd", "timezone"),
    ],
)
def test_invalid_expressions_and_zones_name_their_field(cron: str, tz: str, field: str) -> None:
    with pytest.raises(InvalidSchedule) as info:
        Cron.of(cron, tz)
    assert info.value.field == field


def test_a_spec_checks_its_name_policy_and_cap() -> None:
    good = ScheduleSpec("daily-report.v2", "report", "0 7 * * *", missed="all").check()
    assert good.missed is MissedTicks.ALL
    for bad, field in [
        (ScheduleSpec("", "w", "* * * * *"), "name"),
        (ScheduleSpec("has space", "w", "* * * * *"), "name"),
        (ScheduleSpec("x" * 101, "w", "* * * * *"), "name"),
        (ScheduleSpec("ok", "w", "* * * * *", missed="sometimes"), "missed"),
        (ScheduleSpec("ok", "w", "* * * * *", max_missed=0), "max_missed"),
    ]:
        with pytest.raises(InvalidSchedule) as info:
            bad.check()
        assert info.value.field == field


HOURLY = Cron.of("0 * * * *")


def test_an_on_time_tick_fires_and_the_next_follows() -> None:
    first = at(2024, 6, 1, 10)
    p = plan(HOURLY, first, first + 0.004, MissedTicks.SKIP, 10)
    assert p.ticks == [first]
    assert p.next_at == at(2024, 6, 1, 11)
    assert not p.skipped
    # Late, but within ON_TIME: still on time, whatever the policy.
    late = plan(HOURLY, first, first + ON_TIME - 1, MissedTicks.SKIP, 10)
    assert late.ticks == [first]


def test_missed_ticks_follow_the_policy() -> None:
    first = at(2024, 6, 1, 10)
    now = at(2024, 6, 1, 15, 20)  # 10:00 ... 15:00 passed while nothing ran
    skip = plan(HOURLY, first, now, MissedTicks.SKIP, 10)
    assert (skip.ticks, skip.skipped) == ([], True)
    once = plan(HOURLY, first, now, MissedTicks.ONCE, 10)
    assert once.ticks == [at(2024, 6, 1, 15)]
    assert once.skipped
    every = plan(HOURLY, first, now, MissedTicks.ALL, 10)
    assert [utc(t)[11:16] for t in every.ticks] == [
        "10:00",
        "11:00",
        "12:00",
        "13:00",
        "14:00",
        "15:00",
    ]
    assert not every.skipped
    capped = plan(HOURLY, first, now, MissedTicks.ALL, 2)
    assert capped.ticks == [at(2024, 6, 1, 14), at(2024, 6, 1, 15)]
    assert capped.skipped
    for p in (skip, once, every, capped):
        assert p.next_at == at(2024, 6, 1, 16)


def test_a_missed_tick_and_an_on_time_one_both_fire_with_once() -> None:
    first = at(2024, 6, 1, 10)
    now = at(2024, 6, 1, 12, 0, 5)  # 12:00 is on time; 10:00 and 11:00 were missed
    once = plan(HOURLY, first, now, MissedTicks.ONCE, 10)
    assert once.ticks == [at(2024, 6, 1, 11), at(2024, 6, 1, 12)]
    skip = plan(HOURLY, first, now, MissedTicks.SKIP, 10)
    assert skip.ticks == [at(2024, 6, 1, 12)]


def test_a_per_second_backlog_is_bounded_per_pass() -> None:
    cron = Cron.of("* * * * * *")
    first = at(2024, 6, 1)
    now = first + 30 * 86400  # a month of per-second ticks: planned without walking them
    p = plan(cron, first, now, MissedTicks.ALL, 5)
    assert len(p.ticks) == 5 + int(ON_TIME) + 1  # the newest 5 missed, then the on-time ones
    assert p.ticks == [now - ON_TIME - 5 + i for i in range(len(p.ticks))]
    assert p.next_at == now + 1
    assert p.skipped


def test_upcoming_and_keys() -> None:
    first = at(2024, 6, 1, 10)
    assert upcoming(HOURLY, first, 3) == [first, first + 3600, first + 7200]
    assert upcoming(HOURLY, None, 3) == []
    assert tick_key("daily", first) == "schedule:daily:2024-06-01T10:00:00.000000Z"
