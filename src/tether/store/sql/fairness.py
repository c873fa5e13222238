"""Fair claiming: each new task's place in its queue's claim order (ADR 88).

Start-time fair queueing over fairness keys (a task's tenant unless its workflow picks
a key). Each queue has a virtual time; each key a clock in it (`fair_clocks`). A new
task of key `k` and weight `w` starts at `max(clock_k, floor)` and moves the clock on
by `1/w`: a key with a backlog runs ahead of the others' clocks, so a key that
submits later is served in turn with it instead of behind it, and a key of weight 2
gets two turns to one. The floor, where service stands, is the start of the queue's
next task (its head in claim order), or, when nothing is queued, the furthest clock:
a key idle for a while comes back level with the others, with no credit saved up.

Priority is folded into the same order: a task's rank is its start less
`PRIORITY_STEP` virtual units per priority point. A higher priority overtakes up to
that much of other work, and no more, so a low-priority task's turn comes however
much high-priority work keeps arriving: it ages into the front as the floor passes it.

A task not yet due when submitted (`run_at` later) gets no rank: it is claimed by due
time once due (its place in the fair order is unknown until then).

The clocks of a batch's keys move on in one upsert, which reads each queue's floor in
its own values and returns the new clocks; each task's rank is its clock less an
offset known beforehand (`Ranking`). One statement per batch, whatever its size: on
PostgreSQL the intake's one-statement submit embeds it as a CTE.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tether.store.base import NewTask
from tether.store.sql.core import Conn, Dialect

PRIORITY_STEP = 1000.0
"""Virtual units (tasks of weight 1) a priority point is worth in the claim order."""

FLOOR = (
    f"COALESCE((SELECT fair_rank + priority * {PRIORITY_STEP} FROM tasks WHERE status = 'queued' "
    "AND queue = %s AND fair_rank IS NOT NULL ORDER BY fair_rank LIMIT 1), "
    "(SELECT MAX(clock) FROM fair_clocks WHERE queue = %s), 0)"
)
"""Where service stands in a queue's virtual time: its head's start, else the furthest
clock (see the module's docstring)."""


def fair_key(task: NewTask) -> str:
    """The key `task` is served fairly by: its own, else its tenant."""
    return task.tenant if task.fair_key is None else task.fair_key


@dataclass
class Ranking:
    """How a batch's ranks come from its keys' new clocks: task `id`'s rank is the new
    clock of `keys[id]` less `offsets[id]`."""

    totals: dict[tuple[str, str], float]
    """Virtual time each (queue, key) of the batch adds to its clock, in lock order."""
    keys: dict[str, tuple[str, str]]
    offsets: dict[str, float]

    def upsert(self, d: Dialect) -> tuple[str, list[Any]]:
        """The statement moving the clocks on, `RETURNING queue, fair_key, clock`."""
        text = (
            "INSERT INTO fair_clocks (queue, fair_key, clock, batch) VALUES "
            + ", ".join([f"(%s, %s, {FLOOR} + %s, %s)"] * len(self.totals))
            + " ON CONFLICT (queue, fair_key) DO UPDATE SET clock = "
            f"{d.greatest}(fair_clocks.clock + excluded.batch, excluded.clock), "
            "batch = excluded.batch RETURNING queue, fair_key, clock"
        )
        params = [
            v
            for (queue, key), total in self.totals.items()
            for v in (queue, key, queue, queue, total, total)
        ]
        return text, params


def ranking(tasks: Sequence[NewTask], now: float) -> Ranking | None:
    """The `Ranking` of those of `tasks` due by `now` (None: none is)."""
    by_key: dict[tuple[str, str], list[NewTask]] = defaultdict(list)
    for t in tasks:
        if t.run_at is None or t.run_at <= now:
            by_key[(t.queue, fair_key(t))].append(t)
    if not by_key:
        return None
    # Sorted: concurrent batches lock their keys' clock rows in one order.
    totals = {key: sum(1.0 / t.fair_weight for t in by_key[key]) for key in sorted(by_key)}
    keys: dict[str, tuple[str, str]] = {}
    offsets: dict[str, float] = {}
    for key, group in by_key.items():
        ahead = totals[key]  # of the clock, from this task's start
        for t in group:
            keys[t.id] = key
            offsets[t.id] = ahead + t.priority * PRIORITY_STEP
            ahead -= 1.0 / t.fair_weight
    return Ranking(totals, keys, offsets)


async def ranks(conn: Conn, d: Dialect, tasks: Sequence[NewTask], now: float) -> dict[str, float]:
    """The claim-order rank of each of `tasks` that is due by `now`, by task id; moves
    the clocks of their keys on. Call in the transaction that inserts them."""
    plan = ranking(tasks, now)
    if plan is None:
        return {}
    clocks = {
        (r["queue"], r["fair_key"]): float(r["clock"]) for r in await conn.fetchall(*plan.upsert(d))
    }
    return {tid: clocks[key] - plan.offsets[tid] for tid, key in plan.keys.items()}
