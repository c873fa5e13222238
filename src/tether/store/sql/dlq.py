"""The dead-letter queue: groups, their members, and the actions that close members and
write the audit trail (ADR 79).

A group's counters are written by the `tasks_dead_letter` trigger (migration 14) in the
transaction that fails a task; everything that takes a member out of the open set goes
through `close_members` (or `close_retried` for one re-run), which keeps them in step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from tether import serde
from tether.ids import new_id
from tether.models import Task, TaskError
from tether.models.dlq import (
    TREND_DAYS,
    TREND_HOURS,
    DlqAction,
    DlqActionType,
    DlqGroup,
    DlqGroupStatus,
    DlqMember,
    DlqMemberState,
    DlqTrend,
)
from tether.store.sql.core import TASK_COLUMNS, Conn, Dialect, Row, task_from_row

GROUP_COLUMNS = (
    "tenant, fingerprint, status, failures, open_members, first_seen, last_seen, step, "
    "error_type, workflows, example_task_id, example_error, assignee, note, escalated_at, "
    "updated_at"
)
ACTION_COLUMNS = (
    "id, tenant, fingerprint, action, actor, reason, assignee, task_ids, created, "
    "requested, idempotency_key, at"
)
HOUR = 3600
DAY = 86400
HOURS_KEPT = 8 * DAY
"""How long hourly buckets are kept: the trend's week, and a day to spare."""

_FAILED_OF = "t.tenant = %s AND t.error_fingerprint = %s AND t.status = 'failed'"
_UNRESOLVED = "NOT EXISTS (SELECT 1 FROM dlq_resolved r WHERE r.task_id = t.id)"


def _error(text: str | None, fingerprint: str) -> TaskError:
    return TaskError.from_json(serde.loads(text)) or TaskError("", "", fingerprint)


def group_from_row(row: Row) -> DlqGroup:
    return DlqGroup(
        tenant=row["tenant"],
        fingerprint=row["fingerprint"],
        status=DlqGroupStatus(row["status"]),
        failures=int(row["failures"]),
        open=max(0, int(row["open_members"])),
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        step=row["step"],
        error_type=row["error_type"],
        workflows=serde.loads(row["workflows"]) or [],
        example_task_id=row["example_task_id"],
        example_error=_error(row["example_error"], row["fingerprint"]),
        assignee=row["assignee"],
        note=row["note"],
        escalated_at=row["escalated_at"],
        updated_at=row["updated_at"],
    )


def action_from_row(row: Row) -> DlqAction:
    return DlqAction(
        id=row["id"],
        tenant=row["tenant"],
        fingerprint=row["fingerprint"],
        action=DlqActionType(row["action"]),
        actor=row["actor"],
        at=row["at"],
        reason=row["reason"],
        assignee=row["assignee"],
        task_ids=serde.loads(row["task_ids"]) or [],
        created=serde.loads(row["created"]) or [],
        requested=serde.loads(row["requested"]),
        idempotency_key=row["idempotency_key"],
    )


# Reading ------------------------------------------------------------------------------


async def list_groups(
    conn: Conn,
    d: Dialect,
    tenant: str,
    status: DlqGroupStatus | None,
    after: tuple[float, str] | None,
    limit: int,
    now: float,
) -> list[DlqGroup]:
    """Groups by latest failure, newest first (ties by fingerprint), after `after`."""
    where, params = ["tenant = %s"], list[Any]([tenant])
    if status is not None:
        where.append("status = %s")
        params.append(str(status))
    if after is not None:
        where.append("(last_seen < %s OR (last_seen = %s AND fingerprint > %s))")
        params += [after[0], after[0], after[1]]
    rows = await conn.fetchall(
        f"SELECT {GROUP_COLUMNS} FROM dlq_groups WHERE {' AND '.join(where)} "
        "ORDER BY last_seen DESC, fingerprint LIMIT %s",
        (*params, limit),
    )
    groups = [group_from_row(r) for r in rows]
    await _add_trends(conn, d, tenant, groups, now)
    return groups


async def get_group(
    conn: Conn, d: Dialect, tenant: str, fingerprint: str, now: float
) -> DlqGroup | None:
    """One group with its trend and its example's traceback, or None."""
    row = await conn.fetchone(
        f"SELECT {GROUP_COLUMNS} FROM dlq_groups WHERE tenant = %s AND fingerprint = %s",
        (tenant, fingerprint),
    )
    if row is None:
        return None
    group = group_from_row(row)
    await _add_trends(conn, d, tenant, [group], now)
    step = await conn.fetchone(
        "SELECT attempt_errors FROM steps WHERE task_id = %s AND status = 'failed' "
        "ORDER BY seq DESC LIMIT 1",
        (group.example_task_id,),
    )
    attempts = serde.loads(step["attempt_errors"]) if step is not None else None
    if attempts:
        group.example_traceback = attempts[-1].get("traceback")
    return group


async def _add_trends(
    conn: Conn, d: Dialect, tenant: str, groups: list[DlqGroup], now: float
) -> None:
    if not groups:
        return
    this_hour = int(now // HOUR) * HOUR
    today = int(now // DAY) * DAY
    since = min(this_hour - (TREND_HOURS - 1) * HOUR, today - (TREND_DAYS - 1) * DAY)
    # One row per group, its buckets in one text: a page's trends are up to 50 x 168
    # buckets, and as rows their conversion alone cost SQLite ~10 ms (bench/dlq.py).
    rows = await conn.fetchall(
        f"SELECT fingerprint, {d.text_agg}(hour || ':' || failures, ',') AS buckets "
        f"FROM dlq_hours WHERE tenant = %s AND fingerprint {d.any_of} AND hour >= %s "
        "GROUP BY fingerprint",
        (tenant, d.list_param([g.fingerprint for g in groups]), since),
    )
    hourly: dict[str, list[int]] = {g.fingerprint: [0] * TREND_HOURS for g in groups}
    daily: dict[str, list[int]] = {g.fingerprint: [0] * TREND_DAYS for g in groups}
    for r in rows:
        hours, days = hourly[r["fingerprint"]], daily[r["fingerprint"]]
        for bucket in r["buckets"].split(","):
            start, _, count = bucket.partition(":")
            hour, failures = int(start), int(count)
            hours_ago = (this_hour - hour) // HOUR
            days_ago = (today - hour // DAY * DAY) // DAY
            if 0 <= hours_ago < TREND_HOURS:
                hours[TREND_HOURS - 1 - hours_ago] += failures
            if 0 <= days_ago < TREND_DAYS:
                days[TREND_DAYS - 1 - days_ago] += failures
    for g in groups:
        g.trend = DlqTrend(tuple(hourly[g.fingerprint]), tuple(daily[g.fingerprint]))


async def list_members(
    conn: Conn,
    tenant: str,
    fingerprint: str,
    state: DlqMemberState | None,
    before: tuple[float, str] | None,
    limit: int,
) -> list[DlqMember]:
    """A group's failed tasks, newest failure first (ties by id), before `before`."""
    where, params = [_FAILED_OF], list[Any]([tenant, fingerprint])
    if state == DlqMemberState.OPEN:
        where.append("r.task_id IS NULL")
    elif state is not None:
        where.append("r.resolution = %s")
        params.append(str(state))
    if before is not None:
        where.append("(t.finished_at < %s OR (t.finished_at = %s AND t.id < %s))")
        params += [before[0], before[0], before[1]]
    rows = await conn.fetchall(
        "SELECT t.id, t.workflow, t.workflow_version, t.finished_at, t.error, "
        "r.resolution, r.retried_as, r.action_id FROM tasks t "
        "LEFT JOIN dlq_resolved r ON r.task_id = t.id "
        f"WHERE {' AND '.join(where)} ORDER BY t.finished_at DESC, t.id DESC LIMIT %s",
        (*params, limit),
    )
    return [
        DlqMember(
            task_id=r["id"],
            workflow=r["workflow"],
            workflow_version=r["workflow_version"],
            failed_at=r["finished_at"] or 0.0,
            error=_error(r["error"], fingerprint),
            state=DlqMemberState(r["resolution"] or "open"),
            retried_as=r["retried_as"],
            action_id=r["action_id"],
        )
        for r in rows
    ]


async def open_tasks(
    conn: Conn,
    d: Dialect,
    tenant: str,
    fingerprint: str,
    task_ids: Sequence[str] | None,
    limit: int,
) -> list[Task]:
    """The group's open members (of `task_ids`, or the oldest `limit`), as tasks."""
    where, params = [_FAILED_OF, _UNRESOLVED], [tenant, fingerprint]
    if task_ids is not None:
        where.append(f"t.id {d.any_of}")
        params.append(d.list_param(list(task_ids)))
    rows = await conn.fetchall(
        f"SELECT {', '.join('t.' + c.strip() for c in TASK_COLUMNS.split(','))} FROM tasks t "
        f"WHERE {' AND '.join(where)} ORDER BY t.finished_at, t.id LIMIT %s",
        (*params, limit),
    )
    return [task_from_row(r) for r in rows]


async def list_actions(
    conn: Conn,
    tenant: str,
    fingerprint: str | None,
    before: tuple[float, str] | None,
    limit: int,
) -> list[DlqAction]:
    """Audit trail entries, newest first (of one group, or of all the tenant's)."""
    where, params = ["tenant = %s"], list[Any]([tenant])
    if fingerprint is not None:
        where.append("fingerprint = %s")
        params.append(fingerprint)
    if before is not None:
        where.append("(at < %s OR (at = %s AND id < %s))")
        params += [before[0], before[0], before[1]]
    rows = await conn.fetchall(
        f"SELECT {ACTION_COLUMNS} FROM dlq_actions WHERE {' AND '.join(where)} "
        "ORDER BY at DESC, id DESC LIMIT %s",
        (*params, limit),
    )
    return [action_from_row(r) for r in rows]


async def action_by_key(conn: Conn, tenant: str, key: str) -> DlqAction | None:
    row = await conn.fetchone(
        f"SELECT {ACTION_COLUMNS} FROM dlq_actions WHERE tenant = %s AND idempotency_key = %s",
        (tenant, key),
    )
    return None if row is None else action_from_row(row)


# Writing ------------------------------------------------------------------------------


async def record_action(conn: Conn, a: DlqAction) -> None:
    """Append `a` to the audit trail."""
    await conn.execute(
        f"INSERT INTO dlq_actions ({ACTION_COLUMNS}) VALUES ({', '.join(['%s'] * 12)})",
        (
            a.id,
            a.tenant,
            a.fingerprint,
            str(a.action),
            a.actor,
            a.reason,
            a.assignee,
            serde.dumps(a.task_ids),
            serde.dumps(a.created),
            None if a.requested is None else serde.dumps(a.requested),
            a.idempotency_key,
            a.at,
        ),
    )


async def _left(conn: Conn, tenant: str, left: Counter[str], how: str, now: float) -> None:
    """`left[fp]` members of the tenant's groups left the open set, `how`."""
    for fingerprint, n in left.items():
        await conn.execute(
            "UPDATE dlq_groups SET open_members = open_members - %s, status = CASE "
            "WHEN open_members - %s <= 0 THEN %s ELSE status END, updated_at = %s "
            "WHERE tenant = %s AND fingerprint = %s",
            (n, n, how, now, tenant, fingerprint),
        )


async def close_members(
    conn: Conn,
    d: Dialect,
    tenant: str,
    fingerprint: str,
    task_ids: Sequence[str] | None,
    resolution: DlqMemberState,
    action_id: str,
    now: float,
) -> list[str]:
    """Take open members of a group (`task_ids`, or all) out of the open set; return the
    ids that were open (the others are left as they are)."""
    where, params = [_FAILED_OF, _UNRESOLVED], [tenant, fingerprint]
    if task_ids is not None:
        where.append(f"t.id {d.any_of}")
        params.append(d.list_param(list(task_ids)))
    rows = await conn.fetchall(
        "INSERT INTO dlq_resolved (task_id, tenant, fingerprint, resolution, action_id, at) "
        f"SELECT t.id, t.tenant, t.error_fingerprint, %s, %s, %s FROM tasks t "
        f"WHERE {' AND '.join(where)} ON CONFLICT (task_id) DO NOTHING RETURNING task_id",
        (str(resolution), action_id, now, *params),
    )
    closed = sorted(r["task_id"] for r in rows)
    if closed:
        await _left(conn, tenant, Counter({fingerprint: len(closed)}), str(resolution), now)
    return closed


async def close_retried(
    conn: Conn,
    task: Row,
    retried_as: str,
    action_id: str | None,
    now: float,
    resolution: str = "retried",
) -> bool:
    """A failed task was re-run (or, `resolution` `compensated`, compensated) as
    `retried_as`: it leaves its group's open members (if it still was one). `task` is
    its row (`TASK_COLUMNS`)."""
    error = TaskError.from_json(serde.loads(task["error"]))
    if task["status"] != "failed" or error is None:
        return False
    tenant, fingerprint = task["tenant"], error.fingerprint
    row = await conn.fetchone(
        "INSERT INTO dlq_resolved (task_id, tenant, fingerprint, resolution, retried_as, "
        "action_id, at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (task_id) DO NOTHING RETURNING task_id",
        (task["id"], tenant, fingerprint, resolution, retried_as, action_id, now),
    )
    if row is None:
        return False
    await _left(conn, tenant, Counter({fingerprint: 1}), resolution, now)
    return True


async def is_open(conn: Conn, task_id: str) -> bool:
    """Whether a failed task is still an open member (not retried nor dismissed)."""
    return await conn.fetchone("SELECT 1 FROM dlq_resolved WHERE task_id = %s", (task_id,)) is None


async def escalate(
    conn: Conn, tenant: str, fingerprint: str, assignee: str, note: str | None, now: float
) -> None:
    await conn.execute(
        "UPDATE dlq_groups SET assignee = %s, note = %s, escalated_at = %s, updated_at = %s "
        "WHERE tenant = %s AND fingerprint = %s",
        (assignee, note, now, now, tenant, fingerprint),
    )


async def group_exists(conn: Conn, d: Dialect, tenant: str, fingerprint: str) -> bool:
    return (
        await conn.fetchone(
            f"SELECT 1 FROM dlq_groups WHERE tenant = %s AND fingerprint = %s{d.lock_rows}",
            (tenant, fingerprint),
        )
        is not None
    )


# Retention ----------------------------------------------------------------------------


async def forget_members(conn: Conn, d: Dialect, ids: Any, now: float) -> None:
    """Before tasks `ids` (a list parameter) are purged: their open failures leave their
    groups (an `expire` entry in each group's trail names them), and their member
    states go with them."""
    rows = await conn.fetchall(
        "SELECT t.id, t.tenant, t.error_fingerprint FROM tasks t "
        f"WHERE t.id {d.any_of} AND t.status = 'failed' AND t.error_fingerprint IS NOT NULL "
        f"AND {_UNRESOLVED} ORDER BY t.id",
        (ids,),
    )
    by_group: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        by_group.setdefault((r["tenant"], r["error_fingerprint"]), []).append(r["id"])
    for (tenant, fingerprint), task_ids in sorted(by_group.items()):
        await _left(conn, tenant, Counter({fingerprint: len(task_ids)}), "expired", now)
        await record_action(
            conn,
            DlqAction(
                id=new_id(),
                tenant=tenant,
                fingerprint=fingerprint,
                action=DlqActionType.EXPIRE,
                actor="retention",
                at=now,
                reason="purged with their tasks (retention_days)",
                task_ids=task_ids,
            ),
        )
    await conn.execute(f"DELETE FROM dlq_resolved WHERE task_id {d.any_of}", (ids,))


async def purge_groups(conn: Conn, d: Dialect, quiet_before: float, now: float, batch: int) -> int:
    """Delete up to `batch` groups with no open members and no failure or action since
    `quiet_before`, with their audit trail; and hourly buckets past the trend's week."""
    await conn.execute("DELETE FROM dlq_hours WHERE hour < %s", (now - HOURS_KEPT,))
    rows = await conn.fetchall(
        "SELECT tenant, fingerprint FROM dlq_groups WHERE open_members <= 0 "
        f"AND updated_at < %s ORDER BY updated_at LIMIT %s{d.skip_locked}",
        (quiet_before, batch),
    )
    for r in rows:
        for table in ("dlq_actions", "dlq_hours", "dlq_groups"):
            await conn.execute(
                f"DELETE FROM {table} WHERE tenant = %s AND fingerprint = %s",
                (r["tenant"], r["fingerprint"]),
            )
    return len(rows)
