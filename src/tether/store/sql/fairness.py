"""Fair claiming: each new task's place in its queue's claim order (ADR 88).

Start-time fair queueing over fairness keys (a task's tenant unless its workflow picks
a key). Each queue has a virtual time; each key a clock in it (`fair_clocks`). A new
task of key `k` and weight `w` starts at `max(clock_k, floor)` and moves the clock on
by `1/w`: a key with a backlog runs ahead of the others' clocks, so a key that
submits later is served in turn with it instead of behind it, and a key of weight 2
gets two turns to one. The floor, where service stands, is the start of the queue's
next task (its head in claim order), or, when nothing is queued, the furthest clock,
and it never goes back (`fair_queues`): a key idle for a while comes back level with
the others, with no more credit than `IDLE_CREDIT`.

Priority is folded into the same order: a task's rank is its start less
`PRIORITY_STEP` virtual units per priority point. A higher priority overtakes up to
that much of other work, and no more, so a low-priority task's turn comes however
much high-priority work keeps arriving: it ages into the front as the floor passes it.

A key that was idle comes back with credit for the turns it missed, up to
`IDLE_CREDIT`: its clock restarts that far behind the floor (as a scheduler favours a
task that slept). A quiet tenant's burst of a few tasks then goes ahead of a noisy
one's backlog instead of only taking turns with it; a larger burst takes turns after
its first `IDLE_CREDIT`. Because the floor never goes back, a credited head does not
drag it back, and newcomers cannot leapfrog each other.

A task not yet due when submitted (`run_at` later) gets no rank: it is claimed by due
time once due (its place in the fair order is unknown until then).

A batch takes two upserts, whatever its size (`Ranking`): the floors of its queues
(`RETURNING` them), then the clocks of its keys (`RETURNING` them); each task's start
is its key's new clock less an offset known beforehand, its rank that less its
priority's worth. On PostgreSQL the intake's one-statement submit embeds both as
CTEs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tether.store.sql.core import Conn, Dialect

PRIORITY_STEP = 1000.0
"""Virtual units (tasks of weight 1) a priority point is worth in the claim order."""
IDLE_CREDIT = 100.0
"""The most turns a key that was idle may take ahead of keys with a backlog."""

SERVED = (
    f"COALESCE((SELECT fair_rank + priority * {PRIORITY_STEP} FROM tasks "
    "WHERE status = 'queued' AND queue = %s AND fair_rank IS NOT NULL ORDER BY fair_rank "
    "LIMIT 1), (SELECT MAX(clock) FROM fair_clocks WHERE queue = %s), 0)"
)
"""Where service stands in a queue's virtual time now: its head's start, else the
furthest clock (see the module's docstring); the floor is the most it has been."""

FloorSource = Callable[[str], tuple[str, list[Any]]]
"""The SQL of a queue's floor in the clocks' upsert, and its parameters."""


class Rankable(Protocol):
    """What ranking needs of a task: a `NewTask`, or a task moving queue (`Moved`)."""

    @property
    def id(self) -> str: ...
    @property
    def tenant(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def run_at(self) -> float | None: ...
    @property
    def fair_key(self) -> str | None: ...
    @property
    def fair_weight(self) -> float: ...


@dataclass(frozen=True)
class Moved:
    """A task routed to another queue (ADR 93): it is ranked there afresh, as a new
    task of its key would be (at weight 1: the weight is not stored)."""

    id: str
    tenant: str
    queue: str
    priority: int
    fair_key: str | None
    fair_weight: float = 1.0
    run_at: float | None = None


def fair_key(task: Rankable) -> str:
    """The key `task` is served fairly by: its own, else its tenant."""
    return task.tenant if task.fair_key is None else task.fair_key


@dataclass
class Ranking:
    """How a batch's places come from its keys' new clocks: task `id` of key
    `keys[id]` starts at the key's new clock less `offsets[id]`, and ranks
    `priorities[id]` before its start."""

    totals: dict[tuple[str, str], float]
    """Virtual time each (queue, key) of the batch adds to its clock, in lock order."""
    keys: dict[str, tuple[str, str]]
    offsets: dict[str, float]
    priorities: dict[str, float]

    def floors(self, d: Dialect) -> tuple[str, list[Any]]:
        """The statement moving the floors of the batch's queues on (never back),
        `RETURNING queue, floor`."""
        queues = sorted({q for q, _ in self.totals})
        text = (
            "INSERT INTO fair_queues (queue, floor) VALUES "
            + ", ".join([f"(%s, {SERVED})"] * len(queues))
            + " ON CONFLICT (queue) DO UPDATE SET floor = "
            f"{d.greatest}(fair_queues.floor, excluded.floor) RETURNING queue, floor"
        )
        return text, [v for q in queues for v in (q, q, q)]

    def clocks(self, d: Dialect, floor: FloorSource) -> tuple[str, list[Any]]:
        """The statement moving the clocks on, `RETURNING queue, fair_key, clock`: a
        clock it meets moves to `max(clock, floor - IDLE_CREDIT)` plus the batch."""
        rows: list[str] = []
        params: list[Any] = []
        for (queue, key), total in self.totals.items():
            text, floor_params = floor(queue)
            rows.append(f"(%s, %s, {text} - {IDLE_CREDIT} + %s, %s)")
            params += [queue, key, *floor_params, total, total]
        text = (
            "INSERT INTO fair_clocks (queue, fair_key, clock, batch) VALUES "
            + ", ".join(rows)
            + " ON CONFLICT (queue, fair_key) DO UPDATE SET clock = "
            f"{d.greatest}(fair_clocks.clock + excluded.batch, excluded.clock), "
            "batch = excluded.batch RETURNING queue, fair_key, clock"
        )
        return text, params


def ranking(tasks: Sequence[Rankable], now: float) -> Ranking | None:
    """The `Ranking` of those of `tasks` due by `now` (None: none is)."""
    by_key: dict[tuple[str, str], list[Rankable]] = defaultdict(list)
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
            offsets[t.id] = ahead
            ahead -= 1.0 / t.fair_weight
    priorities = {t.id: t.priority * PRIORITY_STEP for g in by_key.values() for t in g}
    return Ranking(totals, keys, offsets, priorities)


async def ranks(conn: Conn, d: Dialect, tasks: Sequence[Rankable], now: float) -> dict[str, float]:
    """The claim-order rank of each of `tasks` that is due by `now`, by task id; moves
    the floors and clocks on. Call in the transaction that inserts them."""
    plan = ranking(tasks, now)
    if plan is None:
        return {}
    floors = {r["queue"]: float(r["floor"]) for r in await conn.fetchall(*plan.floors(d))}
    rows = await conn.fetchall(*plan.clocks(d, lambda q: ("%s", [floors[q]])))
    clocks = {(r["queue"], r["fair_key"]): float(r["clock"]) for r in rows}
    return {
        tid: clocks[key] - plan.offsets[tid] - plan.priorities[tid]
        for tid, key in plan.keys.items()
    }
