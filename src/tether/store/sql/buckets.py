"""Rate-limit buckets in the GCRA form (ADR 90): one row per bucket, one statement per
take.

A take is an upsert whose `SET` decides from the row as it is when the statement
holds it (SQLite: inside the write transaction; PostgreSQL: under the row lock the
`UPDATE` takes, re-reading the latest version), so two takes never both spend the
same units: there is no read-modify-write between a read and a write. The statement
also records whether it granted (`granted`), since `RETURNING` sees only the new row.
A take over several buckets runs them in one transaction, in key order (no deadlock),
and rolls back when one refuses.
"""

from __future__ import annotations

from collections.abc import Sequence

from tether.models.buckets import BucketKey, BucketKind, BucketState
from tether.store.buckets import EPSILON, Take, TakeOutcome
from tether.store.sql.core import Conn, Row

COLUMNS = "kind, name, tenant, tat, rate, burst, granted, updated_at"

_BASE = "(CASE WHEN b.tat > %s THEN b.tat ELSE %s END)"  # max(tat, now)
_OK = f"{_BASE} + %s <= %s"  # max(tat, now) + (need - burst) / rate <= now
_ROW = "VALUES (%s, %s, %s, %s, %s, %s, 1, %s)"
_TAKE = (
    f"INSERT INTO rate_buckets AS b ({COLUMNS}) {{row}} "
    "ON CONFLICT (kind, name, tenant) DO UPDATE SET "
    f"tat = CASE WHEN {_OK} THEN {_BASE} + %s ELSE b.tat END, "
    f"granted = CASE WHEN {_OK} THEN 1 ELSE 0 END, "
    "rate = excluded.rate, burst = excluded.burst, updated_at = excluded.updated_at "
    "RETURNING tat, granted"
)
TAKE = _TAKE.format(row=_ROW)
TAKE_ASYNC_COMMIT = _TAKE.format(
    row="SELECT %s, %s, %s, %s::float8, %s::float8, %s::float8, 1, %s::float8 "
    "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit"
)
"""`TAKE` as a PostgreSQL statement alone in autocommit that commits without waiting
for the disk (ADR 75): a bucket's row is locked until its statement commits, so a hot
bucket would otherwise admit one take per WAL flush."""
DEBIT = (
    f"INSERT INTO rate_buckets AS b ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, 1, %s) "
    "ON CONFLICT (kind, name, tenant) DO UPDATE SET "
    f"tat = {_BASE} + %s, rate = excluded.rate, burst = excluded.burst, "
    "updated_at = excluded.updated_at"
)
CREDIT = (
    "UPDATE rate_buckets SET tat = CASE WHEN tat - %s > %s THEN tat - %s ELSE %s END "
    "WHERE kind = %s AND name = %s AND tenant = %s"
)


class Refused(Exception):
    """A take over several buckets met one that refused: its transaction rolls back,
    so the buckets taken from before it are as they were."""

    def __init__(self, outcome: TakeOutcome) -> None:
        super().__init__("refused")
        self.outcome = outcome


def _key(t: Take) -> tuple[str, str, str]:
    return (t.key.kind.value, t.key.name, t.key.tenant)


def _take_params(t: Take, now: float) -> tuple[float | str, ...]:
    per_unit = 1.0 / t.rate
    slack = (t.need - t.burst) * per_unit
    ok = (now, now, slack, now + EPSILON)
    cost = t.cost * per_unit
    return (*_key(t), now + cost, t.rate, t.burst, now, *ok, now, now, cost, *ok)


async def take(conn: Conn, takes: Sequence[Take], now: float, statement: str = TAKE) -> TakeOutcome:
    """Take from every bucket of `takes`, all or none: raises `Refused` (to roll the
    transaction back) when a bucket refuses after another was taken from, else
    returns the outcome."""
    ordered = sorted(takes, key=_key)
    for i, t in enumerate(ordered):
        row = await conn.fetchone(statement, _take_params(t, now))
        assert row is not None  # an upsert returns its row
        if not row["granted"]:
            retry_at = float(row["tat"]) + (t.need - t.burst) / t.rate
            outcome = TakeOutcome(False, retry_at, t.key)
            if i:
                raise Refused(outcome)
            return outcome
    return TakeOutcome(True)


async def adjust(
    conn: Conn, key: BucketKey, amount: float, rate: float, burst: float, now: float
) -> None:
    """Debit `amount` units (into debt if need be), or credit them back when negative
    (never beyond a full bucket)."""
    seconds = amount / rate
    names = (key.kind.value, key.name, key.tenant)
    if seconds >= 0:
        await conn.execute(DEBIT, (*names, now + seconds, rate, burst, now, now, now, seconds))
    else:
        await conn.execute(CREDIT, (-seconds, now, -seconds, now, *names))


def _state(row: Row) -> BucketState:
    return BucketState(
        key=BucketKey(BucketKind(row["kind"]), row["name"], row["tenant"]),
        tat=float(row["tat"]),
        rate=float(row["rate"]),
        burst=float(row["burst"]),
        granted=bool(row["granted"]),
        updated_at=float(row["updated_at"]),
    )


async def list_buckets(conn: Conn, tenant: str | None) -> list[BucketState]:
    sql = f"SELECT {COLUMNS} FROM rate_buckets"
    params: tuple[str, ...] = ()
    if tenant is not None:
        sql += " WHERE tenant = %s"
        params = (tenant,)
    rows = await conn.fetchall(sql + " ORDER BY kind, name, tenant", params)
    return [_state(r) for r in rows]
