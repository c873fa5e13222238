"""Which ticks of a due schedule a scheduler fires now: the policy for missed ticks.

A tick at most `ON_TIME` seconds late is on time and always fires (a scheduler that
restarts, or a slow database, delays it; nothing was missed). An older one was missed
while no scheduler ran, and the schedule's `MissedTicks` policy decides: `skip` fires
none of them, `once` the latest, `all` each of them, the newest `max_missed`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tether.models.schedules import MissedTicks
from tether.models.times import format_time, parse_time
from tether.schedules.cron import Cron

ON_TIME = 60.0
"""Seconds after its time within which a tick is late, not missed."""


@dataclass(frozen=True)
class Plan:
    """What to fire: `ticks` (oldest first), and the schedule's next tick after them."""

    ticks: list[float]
    next_at: float
    skipped: bool
    """Whether missed ticks were left out (`skip`, `once`, or past `max_missed`)."""


def plan(cron: Cron, first: float, now: float, missed: MissedTicks, max_missed: int) -> Plan:
    """The ticks to fire at `now` of a schedule whose next tick is `first` (a tick of
    `cron` at or before `now`)."""
    cutoff = math.ceil(now - ON_TIME)  # ticks fall on whole seconds
    on_time_from = first if first >= cutoff else cron.next_after(cutoff - 1)
    ticks: list[float] = []
    t = on_time_from
    while t <= now:  # at most ON_TIME + 1 of them: ticks are whole seconds apart
        ticks.append(t)
        t = cron.next_after(t)
    if first >= cutoff:
        return Plan(ticks, t, skipped=False)
    # Ticks in [first, cutoff) were missed: walk back from the newest of them.
    wanted = {MissedTicks.SKIP: 0, MissedTicks.ONCE: 1}.get(missed, max(0, max_missed))
    late: list[float] = []
    m = cron.prev_before(on_time_from)
    while m >= first and len(late) < wanted:
        late.append(m)
        m = cron.prev_before(m)
    return Plan([*reversed(late), *ticks], t, skipped=m >= first)


def tick_key(name: str, tick: float) -> str:
    """The idempotency key of the task of schedule `name`'s tick at `tick`:
    `schedule:NAME:2024-06-10T07:00:00.000000Z`."""
    return f"schedule:{name}:{format_time(tick)}"


def scheduled_tick(idempotency_key: str | None) -> float | None:
    """The tick a task was started for, from its idempotency key (`tick_key`): what a
    scheduled workflow reads to know which run it is, the same on every replay
    (`scheduled_tick(ctx.task.idempotency_key)`). None for any other task, and for a
    task started by `trigger`."""
    parts = (idempotency_key or "").split(":", 2)  # names have no ':'
    if len(parts) != 3 or parts[0] != "schedule" or parts[2].startswith("trigger:"):
        return None
    try:
        return parse_time(parts[2])
    except ValueError:
        return None


def trigger_key(name: str, key: str) -> str:
    """The idempotency key of a task started by hand (`trigger`) with the caller's `key`."""
    return f"schedule:{name}:trigger:{key}"


def upcoming(cron: Cron, first: float | None, count: int) -> list[float]:
    """The next `count` ticks from `first` on (the schedule's `next_at`; None: paused,
    no ticks)."""
    out: list[float] = []
    t = first
    while t is not None and len(out) < count:
        out.append(t)
        t = cron.next_after(t)
    return out
