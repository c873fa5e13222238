"""Circuit breakers (ADR 91): each one a row of `breakers`, moved by the outcomes of the
steps that name its integration, by a step entering a breaker that is not closed, and
by operators; a half-open breaker's probes are slots of `sql.gate_slots` (gate
`breaker`), and the steps it holds wait in that gate's line, woken when it closes.

Every change locks the breaker's row first (on PostgreSQL; SQLite writes one at a time).
What opening notifies is built by the caller (`Announce`) and stored in the transaction
that opened it, so exactly one opening is announced, once, however many workers saw the
failures.
"""

from __future__ import annotations

from dataclasses import replace

from tether.models.breakers import FLEET, Breaker, BreakerPolicy, BreakerState
from tether.store.breakers import Announce, Entry, Moved, Outcome
from tether.store.sql import gate_slots
from tether.store.sql.core import Conn, Dialect, Row
from tether.store.sql.gate_slots import BREAKER, Gate
from tether.store.sql.notifications import add_notifications

MANUAL_RECHECK = 300.0
"""Seconds a step held by a breaker opened by hand waits before it looks again (closing
it by hand wakes the step at once: this only bounds a missed wake-up)."""

CIRCUIT_CLOSED = "circuit_closed"
"""The decision of the `task.queued` event of a step woken by its breaker closing."""

COLUMNS = (
    "tenant, integration, state, manual, failures, window_start, window_calls, "
    "window_failures, prev_calls, prev_failures, opened_at, open_until, opens, reason, "
    "updated_by, updated_at"
)


def _breaker(row: Row) -> Breaker:
    return Breaker(
        tenant=row["tenant"],
        integration=row["integration"],
        state=BreakerState(row["state"]),
        manual=bool(row["manual"]),
        failures=int(row["failures"]),
        window_start=row["window_start"],
        window_calls=int(row["window_calls"]),
        window_failures=int(row["window_failures"]),
        prev_calls=int(row["prev_calls"]),
        prev_failures=int(row["prev_failures"]),
        opened_at=row["opened_at"],
        open_until=row["open_until"],
        opens=int(row["opens"]),
        reason=row["reason"],
        updated_by=row["updated_by"],
        updated_at=float(row["updated_at"]),
    )


async def list_breakers(conn: Conn) -> list[Breaker]:
    """Every breaker row (closed ones too), by scope and integration."""
    rows = await conn.fetchall(f"SELECT {COLUMNS} FROM breakers ORDER BY tenant, integration")
    return [_breaker(r) for r in rows]


async def _locked(
    conn: Conn, d: Dialect, scope: str, integration: str, now: float, *, create: bool = True
) -> Breaker | None:
    """The breaker, its row locked; created closed if it had none and `create` (else
    None: a breaker without a row is closed and has counted nothing)."""
    select = f"SELECT {COLUMNS} FROM breakers WHERE tenant = %s AND integration = %s{d.lock_rows}"
    row = await conn.fetchone(select, (scope, integration))
    if row is None and create:
        # A concurrent creator wins; this then waits on its row lock and reads its row.
        await conn.execute(
            "INSERT INTO breakers (tenant, integration, updated_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (tenant, integration) DO NOTHING",
            (scope, integration, now),
        )
        row = await conn.fetchone(select, (scope, integration))
    return None if row is None else _breaker(row)


async def _row(conn: Conn, d: Dialect, scope: str, integration: str, now: float) -> Breaker:
    b = await _locked(conn, d, scope, integration, now)
    assert b is not None  # created above
    return b


async def _save(conn: Conn, b: Breaker) -> None:
    await conn.execute(
        "UPDATE breakers SET state = %s, manual = %s, failures = %s, window_start = %s, "
        "window_calls = %s, window_failures = %s, prev_calls = %s, prev_failures = %s, "
        "opened_at = %s, open_until = %s, opens = %s, reason = %s, updated_by = %s, "
        "updated_at = %s WHERE tenant = %s AND integration = %s",
        (
            str(b.state),
            1 if b.manual else 0,
            b.failures,
            b.window_start,
            b.window_calls,
            b.window_failures,
            b.prev_calls,
            b.prev_failures,
            b.opened_at,
            b.open_until,
            b.opens,
            b.reason,
            b.updated_by,
            b.updated_at,
            b.tenant,
            b.integration,
        ),
    )


def _gate(b: Breaker) -> Gate:
    return Gate(BREAKER, b.tenant, b.integration)


def _scopes(tenant: str) -> list[str]:
    """The breakers a step of `tenant` meets, in lock order."""
    return sorted({FLEET, tenant})


async def enter(
    conn: Conn,
    d: Dialect,
    tenant: str,
    integration: str,
    policy: BreakerPolicy,
    task_id: str,
    seq: int,
    attempt: int,
    now: float,
) -> Entry:
    """A step of `tenant`'s task asks to call `integration` while one of its breakers
    is not closed (as this process last saw them). An open breaker holds it until its
    cool-down ends (opened by hand: until closed, looked at every `MANUAL_RECHECK`
    seconds); one whose cool-down ended turns half-open; a half-open breaker lets it
    through as a probe while fewer than `policy.probes` are in flight, else holds it for
    a cool-down (a probe's success wakes it sooner). A held step waits in line."""
    found = [await _locked(conn, d, s, integration, now, create=False) for s in _scopes(tenant)]
    met = [b for b in found if b is not None]
    holds: list[tuple[Breaker, float]] = []
    for i, b in enumerate(met):
        if b.state != BreakerState.OPEN:
            continue
        if b.manual:
            holds.append((b, now + MANUAL_RECHECK))
        elif b.open_until is not None and b.open_until > now:
            holds.append((b, b.open_until))
        else:
            met[i] = b = replace(b, state=BreakerState.HALF_OPEN, updated_at=now)
            await _save(conn, b)
    if holds:
        for b, _ in holds:
            await gate_slots.wait(conn, _gate(b), task_id, seq, now)
        return Entry(False, until=max(u for _, u in holds), breakers=tuple(met))
    probing = [b for b in met if b.state == BreakerState.HALF_OPEN]
    for i, b in enumerate(probing):
        if not await gate_slots.acquire(conn, _gate(b), policy.probes, task_id, seq, attempt, now):
            for taken in probing[:i]:
                await _drop_probe(conn, taken, task_id, seq, attempt)
            return Entry(False, until=now + policy.cool_down, breakers=tuple(met))
    return Entry(True, probes=tuple(b.tenant for b in probing), breakers=tuple(met))


async def _drop_probe(conn: Conn, b: Breaker, task_id: str, seq: int, attempt: int) -> None:
    await conn.execute(
        f"DELETE FROM gate_slots WHERE {gate_slots.KEY} AND task_id = %s AND seq = %s "
        "AND attempt = %s",
        (*_gate(b).params, task_id, seq, attempt),
    )


async def _clear_probes(conn: Conn, b: Breaker) -> None:
    await conn.execute(f"DELETE FROM gate_slots WHERE {gate_slots.KEY}", _gate(b).params)


def _opened(b: Breaker, reason: str, now: float, policy: BreakerPolicy | None) -> Breaker:
    return replace(
        b,
        state=BreakerState.OPEN,
        opened_at=now,
        open_until=None if policy is None else now + policy.cool_down,
        opens=b.opens + 1,
        reason=reason,
        updated_at=now,
    )


def _closed(b: Breaker, now: float) -> Breaker:
    """Closed, counting afresh."""
    return replace(
        b,
        state=BreakerState.CLOSED,
        manual=False,
        failures=0,
        window_start=None,
        window_calls=0,
        window_failures=0,
        prev_calls=0,
        prev_failures=0,
        open_until=None,
        updated_at=now,
    )


def _trip(b: Breaker, policy: BreakerPolicy, now: float) -> str | None:
    """Why a closed breaker's counts open it now, or None."""
    if policy.failures is not None and b.failures >= policy.failures:
        return f"{b.failures} transient failures in a row"
    if policy.failure_rate is not None:
        calls, failures = b.rate(now, policy.window)
        if calls >= policy.min_calls and failures >= policy.failure_rate * calls:
            return (
                f"failure rate {failures / calls:.0%} of {calls:.0f} calls over {policy.window:g} s"
            )
    return None


async def outcome(
    conn: Conn,
    d: Dialect,
    tenant: str,
    integration: str,
    policy: BreakerPolicy,
    result: Outcome,
    now: float,
    announce: Announce,
    *,
    successes: int = 0,
    probe: tuple[str, int, int] | None = None,
) -> Moved:
    """Count a step's `result` on the breaker of `integration` that counts `tenant`'s
    steps, with `successes` more successes this process had not written yet. A
    `probe` (task, seq, attempt; `tenant` is then the scope of the breaker it probed)
    that succeeds closes a half-open breaker and wakes the
    steps it held; one that fails opens it again for a cool-down; a neutral one hands
    its probe to the next step in line. Outcomes that reach an open breaker (steps that
    started before it opened) do not count."""
    scope = tenant if probe is not None else policy.scope(tenant)  # a probe names its own
    b = await _row(conn, d, scope, integration, now)
    moved = Moved(b)
    if probe is not None and b.state == BreakerState.HALF_OPEN:
        if result == Outcome.SUCCESS:
            moved.breaker = b = _closed(b, now)
            moved.closed = True
            await _clear_probes(conn, b)
            queues = await gate_slots.wake_all(conn, d, _gate(b), now, CIRCUIT_CLOSED)
            moved.queues = tuple(queues)
        elif result == Outcome.FAILURE:
            moved.breaker = b = replace(
                _opened(b, "a probe failed", now, policy), opens=b.opens, manual=False
            )
            await _clear_probes(conn, b)
        else:
            await _drop_probe(conn, b, *probe)
            queues = await gate_slots.hand_off(
                conn, d, _gate(b), policy.probes, now, CIRCUIT_CLOSED
            )
            moved.queues = tuple(queues)
        await _save(conn, b)
        return moved
    if b.state != BreakerState.CLOSED:
        return moved
    if policy.failure_rate is not None:
        b = b.rolled(now, policy.window)
        b.window_calls += successes + (1 if result != Outcome.NEUTRAL else 0)
        if result == Outcome.FAILURE:
            b.window_failures += 1
    if result == Outcome.SUCCESS:
        b.failures = 0
    elif result == Outcome.FAILURE:
        b.failures += 1
        why = _trip(b, policy, now)
        if why is not None:
            b = _opened(b, why, now, policy)
            moved.opened = True
    b.updated_at = now
    moved.breaker = b
    await _save(conn, b)
    if moved.opened:
        await add_notifications(conn, list(announce(b)), now)
    return moved


async def set_breaker(
    conn: Conn,
    d: Dialect,
    scope: str,
    integration: str,
    open: bool,
    by: str | None,
    reason: str | None,
    now: float,
    announce: Announce,
) -> Moved:
    """Open a breaker by hand (it stays open, without probes, until closed by hand;
    opening a closed one is announced) or close it (whatever opened it: it counts
    afresh, and the steps it held are woken)."""
    b = await _row(conn, d, scope, integration, now)
    moved = Moved(b)
    if open:
        why = "opened by hand" + (f": {reason}" if reason else "")
        was_closed = b.state == BreakerState.CLOSED
        b = _opened(b, why, now, None)
        if not was_closed:
            b.opens -= 1  # already open or probing: not a new opening
        b.manual, b.updated_by = True, by
        moved.opened = was_closed
        await _clear_probes(conn, b)
    else:
        was_open = b.state != BreakerState.CLOSED
        b = _closed(b, now)
        b.updated_by = by
        if was_open:
            b.reason = "closed by hand" + (f": {reason}" if reason else "")
        moved.closed = was_open
        await _clear_probes(conn, b)
        moved.queues = tuple(await gate_slots.wake_all(conn, d, _gate(b), now, CIRCUIT_CLOSED))
    moved.breaker = b
    await _save(conn, b)
    if moved.opened:
        await add_notifications(conn, list(announce(b)), now)
    return moved
