"""Concurrency keys: admitting new tasks under their key's limit (ADR 89).

A key has `max` holders at most: its tasks that were admitted and have not ended
(queued, running or waiting on anything else). A new task is admitted while the key
has room; the rest of a batch waits, `waiting` with reason `concurrency` and no
`run_at`, so no claim takes it and it holds no slot. When a holder ends, a trigger
(migration 18) counts it out and queues the key's next waiter, in fair order; the
trigger of that transition counts the waiter in. Admission is one upsert per key of a
batch, in key order (so concurrent batches lock the rows in one order); on PostgreSQL
the upsert's row lock serializes the batches of one key, so two processes cannot both
take its last place.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from tether.store.base import NewTask
from tether.store.sql.core import Conn, Dialect


async def admit(conn: Conn, d: Dialect, tasks: Sequence[NewTask]) -> set[str]:
    """Admit those of `tasks` that have a concurrency key while their key has room;
    the ids of those that must wait. Call in the transaction that inserts them."""
    by_key: dict[str, list[NewTask]] = defaultdict(list)
    for t in tasks:
        if t.concurrency_key is not None:
            by_key[t.concurrency_key].append(t)
    held: set[str] = set()
    for key in sorted(by_key):
        group = by_key[key]
        limit, n = group[-1].concurrency_max, len(group)  # the latest limit declared wins
        # SET reads the row as it was: `granted` is how far `holders` moves.
        room = f"{d.least}(excluded.max, concurrency_keys.holders + %s)"
        row = await conn.fetchone(
            "INSERT INTO concurrency_keys (key, max, holders, granted) VALUES "
            f"(%s, %s, {d.least}(%s, %s), {d.least}(%s, %s)) ON CONFLICT (key) DO UPDATE "
            f"SET max = excluded.max, granted = {d.greatest}(0, {room} - "
            f"concurrency_keys.holders), holders = {d.greatest}(concurrency_keys.holders, "
            f"{room}) RETURNING granted",
            (key, limit, limit, n, limit, n, n, n),
        )
        granted = 0 if row is None else int(row["granted"])
        held |= {t.id for t in group[granted:]}
    return held
