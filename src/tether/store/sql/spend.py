"""The spend ledger: reservations, settlements, raises by approval (ADR 92).

Every step under a budget books on three lines: its task's, its tenant's day and its
tenant's workflow's day. A reservation is ONE upsert of the three lines whose update
applies only where `spent + reserved + estimate` stays within the limit (the larger of
the configured one and one an approval granted), and the transaction is rolled back
unless all three applied: the check and the booking are one statement per line, so no
process can book between them (on PostgreSQL the upsert locks each row and re-checks
it on its latest version). Lines are always locked in one order, task, tenant,
workflow, so reservations, settlements and sweeps never deadlock one another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tether.errors import NotStorable
from tether.models import Approval, Cost, DaySpend, SpendLine
from tether.models.budgets import MAX_TOKENS, MAX_USD, Scope, from_nanos, to_nanos
from tether.store.spend import HoldOutcome, HoldResult, LineLimit, SpendClaim, SpendReport
from tether.store.sql import events
from tether.store.sql.core import (
    APPROVAL_COLUMNS,
    Conn,
    Dialect,
    Row,
    approval_from_row,
    insert_approval,
    task_for_update,
)

LINE_COLUMNS = (
    "tenant, scope, subject, day, spent_nusd, spent_tokens, reserved_nusd, reserved_tokens, "
    "limit_nusd, limit_tokens, granted_nusd, granted_tokens, approval_id, updated_at"
)
_LINE = "tenant = %s AND scope = %s AND subject = %s AND day = %s"
_KEY = "(tenant, scope, subject, day)"
NO_LIMIT = LineLimit()

BUDGET_KEY = "budget"
"""The key of an approval's request that marks it as a request to raise a budget line
(`{"scope", "subject", "day", "proposed", ...}`): its decision raises the line."""


class Short(Exception):
    """A line cannot cover a reservation: raised to roll the reservation back."""

    def __init__(self, row: Row) -> None:
        super().__init__(row["scope"])
        self.row = row


def _keys(c: SpendClaim | SpendReport) -> list[tuple[Scope, str, str]]:
    """The lines a step books on, in lock order."""
    return [("task", c.task_id, ""), ("tenant", "", c.day), ("workflow", c.workflow, c.day)]


def cap(limit: int | None, granted: int | None) -> int | None:
    """The limit in force: none without a configured one, else the larger of it and a
    granted one."""
    if limit is None:
        return None
    return limit if granted is None else max(limit, granted)


def line_from_row(row: Row) -> SpendLine:
    usd = cap(row["limit_nusd"], row["granted_nusd"])
    return SpendLine(
        tenant=row["tenant"],
        scope=row["scope"],
        subject=row["subject"],
        day=row["day"],
        spent=Cost(from_nanos(row["spent_nusd"]), row["spent_tokens"]),
        reserved=Cost(from_nanos(max(0, row["reserved_nusd"])), max(0, row["reserved_tokens"])),
        limit_usd=None if usd is None else from_nanos(usd),
        limit_tokens=cap(row["limit_tokens"], row["granted_tokens"]),
        approval_id=row["approval_id"],
        updated_at=row["updated_at"],
    )


def _unit_fits(
    spent: int, reserved: int, more: int, limit: int | None, granted: int | None
) -> bool:
    """Whether `more` fits in one unit, `reserved` not counting it yet: within the limit
    in force, and some room left before it (so a zero estimate needs room too)."""
    top = cap(limit, granted)
    return top is None or (spent + reserved + more <= top and spent + reserved < top)


def fits(row: Row, limit: LineLimit, e_nanos: int, e_tokens: int, *, booked: bool) -> bool:
    """Whether line `row`, under `limit`, covers the estimate (`booked`: `row` already
    includes it in `reserved`)."""
    n, t = (e_nanos, e_tokens) if booked else (0, 0)
    usd = _unit_fits(
        row["spent_nusd"], row["reserved_nusd"] - n, e_nanos, limit.nanos, row["granted_nusd"]
    )
    return usd and _unit_fits(
        row["spent_tokens"],
        row["reserved_tokens"] - t,
        e_tokens,
        limit.tokens,
        row["granted_tokens"],
    )


def _fits_sql(unit: str) -> str:
    """The upsert's condition for one unit (the SQL of `_unit_fits`)."""
    used = f"spend_lines.spent_{unit} + spend_lines.reserved_{unit}"
    more = f"excluded.reserved_{unit}"
    return (
        f"(excluded.limit_{unit} IS NULL"
        f" OR ({used} + {more} <= excluded.limit_{unit} AND {used} < excluded.limit_{unit})"
        f" OR (spend_lines.granted_{unit} IS NOT NULL AND {used} + {more} <= "
        f"spend_lines.granted_{unit} AND {used} < spend_lines.granted_{unit}))"
    )


_RESERVE = (
    "INSERT INTO spend_lines (tenant, scope, subject, day, reserved_nusd, reserved_tokens, "
    "limit_nusd, limit_tokens, updated_at) VALUES "
    + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * 3)
    + f" ON CONFLICT {_KEY} DO UPDATE SET "
    "reserved_nusd = spend_lines.reserved_nusd + excluded.reserved_nusd, "
    "reserved_tokens = spend_lines.reserved_tokens + excluded.reserved_tokens, "
    "limit_nusd = excluded.limit_nusd, limit_tokens = excluded.limit_tokens, "
    "updated_at = excluded.updated_at "
    f"WHERE {_fits_sql('nusd')} AND {_fits_sql('tokens')} RETURNING {LINE_COLUMNS}"
)


async def reserve(conn: Conn, d: Dialect, c: SpendClaim, now: float) -> None:
    """Book `c.estimate` on the claim's three lines, or raise `Short` (the caller's
    transaction must then roll back: a line or two may already be booked)."""
    e_n, e_t = c.estimate.nanos, c.estimate.tokens
    if e_n == 0 and e_t == 0:
        await _check_room(conn, c)  # a read: nothing to book
        return
    await _release(conn, await _take_own(conn, c.task_id, c.seq))
    params: list[Any] = []
    for scope, subject, day in _keys(c):
        limit = c.limits.get(scope, NO_LIMIT)
        params += [c.tenant, scope, subject, day, e_n, e_t, limit.nanos, limit.tokens, now]
    rows = {r["scope"]: r for r in await conn.fetchall(_RESERVE, params)}
    for scope, subject, day in _keys(c):
        row = rows.get(scope)
        if row is None:  # the update's condition refused it: read why, for the caller
            row = await _line(conn, c.tenant, scope, subject, day)
            assert row is not None
            raise Short(row)
        if not fits(row, c.limits.get(scope, NO_LIMIT), e_n, e_t, booked=True):
            raise Short(row)  # a line created just now, whose limit is below the estimate
    await conn.execute(
        "INSERT INTO spend_reservations (task_id, seq, attempt, tenant, workflow, day, nusd, "
        "tokens, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (c.task_id, c.seq, c.attempt, c.tenant, c.workflow, c.day, e_n, e_t, now),
    )


async def _check_room(conn: Conn, c: SpendClaim) -> None:
    """A zero estimate reserves nothing: it needs only some room left on each line."""
    for scope, subject, day in _keys(c):
        limit = c.limits.get(scope)
        if limit is None:
            continue
        row = await _line(conn, c.tenant, scope, subject, day)
        if row is None:
            if (limit.nanos is not None and limit.nanos <= 0) or (
                limit.tokens is not None and limit.tokens <= 0
            ):
                raise Short(_empty_row(c.tenant, scope, subject, day, limit))
        elif not fits(row, limit, 0, 0, booked=False):
            raise Short(row)


def _empty_row(tenant: str, scope: str, subject: str, day: str, limit: LineLimit) -> Row:
    return {
        "tenant": tenant,
        "scope": scope,
        "subject": subject,
        "day": day,
        "spent_nusd": 0,
        "spent_tokens": 0,
        "reserved_nusd": 0,
        "reserved_tokens": 0,
        "limit_nusd": limit.nanos,
        "limit_tokens": limit.tokens,
        "granted_nusd": None,
        "granted_tokens": None,
        "approval_id": None,
        "updated_at": 0.0,
    }


async def _line(
    conn: Conn, tenant: str, scope: str, subject: str, day: str, lock: str = ""
) -> Row | None:
    return await conn.fetchone(
        f"SELECT {LINE_COLUMNS} FROM spend_lines WHERE {_LINE}{lock}",
        (tenant, scope, subject, day),
    )


_RESERVATION = "task_id, seq, attempt, tenant, workflow, day, nusd, tokens"


async def _take_own(conn: Conn, task_id: str, seq: int) -> list[Row]:
    """Remove the reservation step `seq` of the task holds from an earlier ask (a hold
    by another gate, a crash): this ask replaces it."""
    return await conn.fetchall(
        f"DELETE FROM spend_reservations WHERE task_id = %s AND seq = %s RETURNING {_RESERVATION}",
        (task_id, seq),
    )


async def _release(conn: Conn, reservations: Sequence[Row]) -> None:
    """Give the amounts of removed `reservations` back to their lines, in lock order."""
    back: dict[tuple[str, str, str, str], list[int]] = {}
    for r in reservations:
        for scope, subject, day in (
            ("task", r["task_id"], ""),
            ("tenant", "", r["day"]),
            ("workflow", r["workflow"], r["day"]),
        ):
            amounts = back.setdefault((r["tenant"], scope, subject, day), [0, 0])
            amounts[0] += r["nusd"]
            amounts[1] += r["tokens"]
    order = {"task": 0, "tenant": 1, "workflow": 2}
    for (tenant, scope, subject, day), (n, t) in sorted(
        back.items(), key=lambda kv: (order[kv[0][1]], kv[0])
    ):
        await conn.execute(
            "UPDATE spend_lines SET reserved_nusd = reserved_nusd - %s, "
            f"reserved_tokens = reserved_tokens - %s WHERE {_LINE}",
            (n, t, tenant, scope, subject, day),
        )


async def release_dead(conn: Conn, tenant: str, day: str, task_id: str | None, now: float) -> int:
    """Release reservations whose task is not running at their attempt any more, or
    whose lease has expired (its worker is presumed dead)."""
    where, params = ("tenant = %s AND day = %s", [tenant, day])
    if task_id is not None:
        where, params = "task_id = %s", [task_id]
    rows = await conn.fetchall(
        f"DELETE FROM spend_reservations WHERE {where} AND NOT EXISTS (SELECT 1 FROM tasks t "
        "WHERE t.id = spend_reservations.task_id AND t.status = 'running' "
        "AND t.attempt = spend_reservations.attempt AND t.lease_expires_at > %s) "
        f"RETURNING {_RESERVATION}",
        (*params, now),
    )
    await _release(conn, rows)
    return len(rows)


_SETTLE = (
    "INSERT INTO spend_lines (tenant, scope, subject, day, spent_nusd, spent_tokens, "
    "updated_at) VALUES "
    + ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * 3)
    + f" ON CONFLICT {_KEY} DO UPDATE SET "
    "spent_nusd = spend_lines.spent_nusd + excluded.spent_nusd, "
    "spent_tokens = spend_lines.spent_tokens + excluded.spent_tokens, "
    "reserved_nusd = spend_lines.reserved_nusd - %s, "
    "reserved_tokens = spend_lines.reserved_tokens - %s, updated_at = excluded.updated_at"
)


async def settle(conn: Conn, r: SpendReport, now: float) -> None:
    """Book an attempt's spend on its lines, releasing the reservation it holds at its
    attempt (one a newer attempt holds is not its own: only the spend is booked)."""
    held = await conn.fetchone(
        "DELETE FROM spend_reservations WHERE task_id = %s AND seq = %s AND attempt = %s "
        "RETURNING day, nusd, tokens",
        (r.task_id, r.seq, r.attempt),
    )
    spent_n, spent_t = r.spent.nanos, r.spent.tokens
    if held is None and spent_n == 0 and spent_t == 0:
        return
    day = r.day if held is None else held["day"]
    back_n, back_t = (0, 0) if held is None else (held["nusd"], held["tokens"])
    params: list[Any] = []
    for scope, subject, line_day in _keys(replace(r, day=day)):
        params += [r.tenant, scope, subject, line_day, spent_n, spent_t, now]
    await conn.execute(_SETTLE, (*params, back_n, back_t))


# Holds and raises ---------------------------------------------------------------------


async def hold_for_raise(
    conn: Conn, d: Dialect, c: SpendClaim, scope: Scope, approval: Approval, now: float
) -> HoldResult:
    """Under the task's row lock (as every change to an approval), then the line's:
    wait on the line's pending approval, or open `approval`; or report that the raise
    was refused, or that the line covers the claim after all."""
    task_row = await task_for_update(conn, d, c.task_id, None)
    if task_row["status"] != "running" or task_row["attempt"] != c.attempt:
        return HoldResult(HoldOutcome.LOST)
    subject, day = next((s, dd) for sc, s, dd in _keys(c) if sc == scope)
    limit = c.limits.get(scope, NO_LIMIT)
    row = await _line(conn, c.tenant, scope, subject, day, d.lock_rows)
    if row is None:
        row = _empty_row(c.tenant, scope, subject, day, limit)
    if fits(row, limit, c.estimate.nanos, c.estimate.tokens, booked=False):
        return HoldResult(HoldOutcome.RETRY)
    prior = None
    if row["approval_id"] is not None:
        found = await conn.fetchone(
            f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = %s", (row["approval_id"],)
        )
        prior = None if found is None else approval_from_row(found)
    if prior is not None and prior.status == "pending":
        await _wait_on(conn, c, scope, subject, day)
        return HoldResult(HoldOutcome.HOLD, prior)
    if prior is not None and prior.status == "rejected" and prior.resolution != "cancelled":
        return HoldResult(HoldOutcome.FAIL, prior)
    # No approval yet, or the last one was granted and is spent again (or its task was
    # cancelled): ask anew. Budget approvals take negative sequence numbers, below the
    # step log, so they never meet a step's.
    low = await conn.fetchone(
        "SELECT MIN(seq) AS low FROM approvals WHERE task_id = %s AND seq < 0", (c.task_id,)
    )
    seq = -1 if low is None or low["low"] is None else int(low["low"]) - 1
    opened = replace(approval, seq=seq)
    await insert_approval(conn, opened)
    await conn.execute(events.INSERT_EVENT, events.approval_opened(opened, c.attempt, None, now))
    await conn.execute(
        "INSERT INTO spend_lines (tenant, scope, subject, day, limit_nusd, limit_tokens, "
        f"approval_id, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT {_KEY} "
        "DO UPDATE SET approval_id = excluded.approval_id, updated_at = excluded.updated_at",
        (c.tenant, scope, subject, day, limit.nanos, limit.tokens, opened.id, now),
    )
    if opened.status == "approved":  # the risk policy approves it by itself
        await grant(conn, opened, now)
        return HoldResult(HoldOutcome.RETRY, opened)
    await _wait_on(conn, c, scope, subject, day)
    return HoldResult(HoldOutcome.HOLD, opened)


async def _wait_on(conn: Conn, c: SpendClaim, scope: str, subject: str, day: str) -> None:
    """Register the task as waiting for the line. Its rows poked by an earlier raise go
    first, so a poke it has already woken for cannot wake its next wait."""
    await conn.execute("DELETE FROM spend_waiters WHERE task_id = %s AND poked = 1", (c.task_id,))
    await conn.execute(
        "INSERT INTO spend_waiters (task_id, tenant, scope, subject, day, poked) "
        "VALUES (%s, %s, %s, %s, %s, 0) ON CONFLICT (task_id, scope, subject, day) "
        "DO UPDATE SET poked = 0",
        (c.task_id, c.tenant, scope, subject, day),
    )


def granted_limits(a: Approval) -> tuple[int | None, int | None]:
    """The limits a budget approval grants: the reviewers' `changes` (`usd`, `tokens`),
    else what it proposed. Raises `NotStorable` for changes that are not limits."""
    spec = a.request.get(BUDGET_KEY) or {}
    proposed = spec.get("proposed") or {}
    changes = check_changes(a.changes)
    usd = changes.get("usd", proposed.get("usd"))
    tokens = changes.get("tokens", proposed.get("tokens"))
    nanos = None if usd is None else to_nanos(float(usd))
    return nanos, (None if tokens is None else int(tokens))


def check_changes(changes: dict[str, Any] | None) -> dict[str, Any]:
    """A budget decision's `changes`: only `usd` (dollars) and `tokens`, neither
    negative. Raises `NotStorable` naming what is wrong."""
    if not changes:
        return {}
    for key, value in changes.items():
        if key not in ("usd", "tokens"):
            raise NotStorable(
                "changes", (key,), "a budget's raise changes only usd and tokens", "budget_key"
            )
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if (
            not number
            or value != value  # NaN
            or value < 0
            or value > (MAX_USD if key == "usd" else MAX_TOKENS)
            or (key == "tokens" and not whole)
        ):
            what = "a number of dollars" if key == "usd" else "a whole number of tokens"
            raise NotStorable("changes", (key,), f"must be {what}, at least 0", "budget_limit")
    return changes


async def grant(conn: Conn, a: Approval, now: float) -> None:
    """Raise the line of an approved budget approval to what it grants."""
    spec = a.request[BUDGET_KEY]
    usd, tokens = granted_limits(a)
    await conn.execute(
        f"UPDATE spend_lines SET granted_nusd = %s, granted_tokens = %s, updated_at = %s "
        f"WHERE {_LINE}",
        (usd, tokens, now, a.tenant, spec["scope"], spec["subject"], spec["day"]),
    )


async def approval_closed(conn: Conn, d: Dialect, a: Approval, now: float) -> None:
    """A budget approval was decided (or timed out): raise its line if approved, then
    wake the tasks waiting for that line, and mark them poked so that one still
    suspending is queued again at once (its suspension checks, `poked`)."""
    spec = a.request.get(BUDGET_KEY)
    if not isinstance(spec, dict):
        return
    if a.status == "approved":
        await grant(conn, a, now)
    line = (a.tenant, spec["scope"], spec["subject"], spec["day"])
    waiting = await conn.fetchall(
        f"UPDATE spend_waiters SET poked = 1 WHERE {_LINE} RETURNING task_id", line
    )
    if not waiting:
        return
    ids = d.list_param(sorted(r["task_id"] for r in waiting))
    woken = await conn.fetchall(
        "UPDATE tasks SET status = 'queued', run_at = %s, wait_reason = NULL, "
        f"wait_signals = NULL, updated_at = %s WHERE id {d.any_of} AND status = 'waiting' "
        "RETURNING id, tenant, attempt",
        (now, now, ids),
    )
    await events.insert(
        conn,
        [events.woken(r["id"], r["tenant"], r["attempt"], now, "budget_raised") for r in woken],
    )


async def poked(conn: Conn, task_id: str) -> bool:
    """Whether a line the task waits for was decided since it asked (a raise that
    came while it was still running)."""
    row = await conn.fetchone(
        "SELECT 1 AS one FROM spend_waiters WHERE task_id = %s AND poked = 1 LIMIT 1", (task_id,)
    )
    return row is not None


# Reads and purges ---------------------------------------------------------------------


async def task_spend(conn: Conn, task_id: str, tenant: str) -> SpendLine | None:
    row = await _line(conn, tenant, "task", task_id, "")
    return None if row is None else line_from_row(row)


async def day_spend(conn: Conn, tenant: str, day: str) -> DaySpend:
    rows = await conn.fetchall(
        f"SELECT {LINE_COLUMNS} FROM spend_lines WHERE tenant = %s AND day = %s "
        "AND scope <> 'task' ORDER BY scope, subject",
        (tenant, day),
    )
    lines = [line_from_row(r) for r in rows]
    total = next(
        (line for line in lines if line.scope == "tenant"),
        SpendLine(tenant=tenant, scope="tenant", subject="", day=day),
    )
    workflows = {line.subject: line for line in lines if line.scope == "workflow"}
    return DaySpend(tenant=tenant, day=day, total=total, workflows=workflows)


async def forget_tasks(conn: Conn, d: Dialect, ids: Any) -> None:
    """Purge the ledger rows of purged tasks (`ids`: a `list_param`): their lines,
    reservations and waits. Day lines stay: they are the tenant's history."""
    await conn.execute(
        f"DELETE FROM spend_lines WHERE scope = 'task' AND subject {d.any_of}", (ids,)
    )
    for table in ("spend_reservations", "spend_waiters"):
        await conn.execute(f"DELETE FROM {table} WHERE task_id {d.any_of}", (ids,))


def budget_request(a: Approval) -> dict[str, Any] | None:
    """The budget part of an approval's request, or None for an ordinary approval."""
    spec = a.request.get(BUDGET_KEY) if isinstance(a.request, dict) else None
    return spec if isinstance(spec, dict) else None
