"""Intake: new tasks, idempotency keys, eager claims."""

from __future__ import annotations

from tether import serde
from tether.errors import IdempotencyConflict
from tether.models import Task, TaskStatus, WaitReason
from tether.store.base import Claimed, Eager, NewTask, Submitted
from tether.store.sql import concurrency, events, fairness
from tether.store.sql.core import Conn, Dialect
from tether.store.sql.queries import get_task
from tether.store.sql.webhooks import create_subscription, task_subscription


async def submit(
    conn: Conn, d: Dialect, tasks: list[NewTask], now: float, eager: Eager | None = None
) -> list[Submitted]:
    out: list[Submitted] = []
    fresh: list[NewTask] = []
    started: set[str] = set()  # created already claimed for `eager`
    taken = await _claim_keys(conn, tasks, now)
    for t in tasks:
        if t.idempotency_key is not None:
            key = (t.tenant, t.idempotency_key)
            if taken is not None:
                live = key not in taken
            else:
                live = (
                    await conn.fetchone(
                        f"{_CLAIM_KEYS} VALUES (%s, %s, %s, %s, %s) {_CLAIM_IF_EXPIRED}",
                        (*key, t.input_hash, t.id, now + t.idempotency_ttl, now),
                    )
                    is None
                )
            if live:
                row = await conn.fetchone(
                    "SELECT input_hash, task_id FROM idempotency_keys "
                    f"WHERE tenant = %s AND key = %s{d.lock_rows}",
                    key,
                )
                assert row is not None
                if row["input_hash"] != t.input_hash:
                    raise IdempotencyConflict(t.idempotency_key, row["task_id"])
                existing = await get_task(conn, row["task_id"], t.tenant)
                if existing is None:  # the same key twice in this batch
                    existing = next((s.task for s in out if s.task.id == row["task_id"]), None)
                if existing is not None:
                    callback = None
                    if t.callback is not None:  # shown again to the same submission
                        callback = await task_subscription(conn, existing.id)
                    out.append(Submitted(existing, created=False, callback=callback))
                    continue
                # The key outlived its task (purged): it now names the new task.
                await conn.execute(
                    "UPDATE idempotency_keys SET input_hash = %s, task_id = %s, expires_at = %s "
                    "WHERE tenant = %s AND key = %s",
                    (t.input_hash, t.id, now + t.idempotency_ttl, *key),
                )
        fresh.append(t)
        run_at = now if t.run_at is None else t.run_at
        claim = (
            eager is not None
            and len(started) < eager.limit
            and t.queue in eager.queues
            and run_at <= now
            and t.forked_from is None
            and t.concurrency_key is None  # admitted only by `concurrency.admit`
        )
        task = new_task_record(t, now, claim)
        if claim:
            started.add(t.id)
            out.append(Submitted(task, True, Claimed(task, {}, [], {}), callback=t.callback))
        else:
            out.append(Submitted(task, created=True, callback=t.callback))
    if fresh:
        owner, lease = (eager.worker, eager.lease_until) if eager is not None else (None, None)
        rank = await fairness.ranks(conn, d, [t for t in fresh if t.id not in started], now)
        held = await concurrency.admit(conn, d, fresh)
        if held:  # their records say they wait
            new = {t.id: t for t in fresh}
            out = [
                Submitted(
                    new_task_record(new[s.task.id], now, held=True), True, callback=s.callback
                )
                if s.created and s.task.id in held
                else s
                for s in out
            ]
        await conn.insert_rows(
            "tasks",
            NEW_TASK_COLUMNS,
            [
                new_task_row(
                    t,
                    now,
                    rank.get(t.id),
                    (owner, lease) if t.id in started else None,
                    held=t.id in held,
                )
                for t in fresh
            ],
        )
        await _new_task_events(conn, d, fresh, started, now, owner)
        if held:
            await events.insert(conn, [events.held(t, now) for t in fresh if t.id in held])
        for t in fresh:
            if t.callback is not None:  # in the task's transaction: no event can miss it
                await create_subscription(conn, t.callback)
    return out


# Claim a key with an upsert, not a read-then-insert: on PostgreSQL two concurrent
# submits cannot lock a row that does not exist yet, but the second INSERT waits for the
# first and then sees its key. A key is taken when it is new or its window has passed.
_CLAIM_KEYS = "INSERT INTO idempotency_keys (tenant, key, input_hash, task_id, expires_at)"
_CLAIM_IF_EXPIRED = (
    "ON CONFLICT (tenant, key) DO UPDATE SET input_hash = excluded.input_hash, "
    "task_id = excluded.task_id, expires_at = excluded.expires_at "
    "WHERE idempotency_keys.expires_at <= %s RETURNING tenant, key, task_id"
)
_KEYS_PER_STATEMENT = 500


async def _claim_keys(conn: Conn, tasks: list[NewTask], now: float) -> set[tuple[str, str]] | None:
    """Claim the keys of a batch with a few statements (a fan-out of children is a
    batch of keyed tasks: one statement per key cost a round trip each on PostgreSQL);
    the (tenant, key) pairs taken for these tasks. None when the batch has fewer than two
    keys or names a key twice (an upsert cannot touch one row twice): the caller then
    claims key by key."""
    keyed = [t for t in tasks if t.idempotency_key is not None]
    keys = {(t.tenant, t.idempotency_key) for t in keyed}
    if len(keyed) < 2 or len(keys) < len(keyed):
        return None
    taken: set[tuple[str, str]] = set()
    for start in range(0, len(keyed), _KEYS_PER_STATEMENT):
        chunk = keyed[start : start + _KEYS_PER_STATEMENT]
        rows = await conn.fetchall(
            f"{_CLAIM_KEYS} VALUES {', '.join(['(%s, %s, %s, %s, %s)'] * len(chunk))} "
            f"{_CLAIM_IF_EXPIRED}",
            [
                v
                for t in chunk
                for v in (t.tenant, t.idempotency_key, t.input_hash, t.id, now + t.idempotency_ttl)
            ]
            + [now],
        )
        ids = {(t.tenant, t.idempotency_key): t.id for t in chunk}
        taken |= {
            (r["tenant"], r["key"])
            for r in rows
            if ids.get((r["tenant"], r["key"])) == r["task_id"]
        }
    return taken


NEW_TASK_COLUMNS = (
    "id, tenant, workflow, workflow_version, queue, priority, status, input, "
    "idempotency_key, correlation_id, created_by, run_at, deadline, forked_from, "
    "fork_from_seq, parent_id, parent_seq, parent_policy, created_at, updated_at, "
    "fair_key, fair_rank, concurrency_key, wait_reason, attempt, lease_owner, "
    "lease_expires_at, started_at, spend_budget"
)


def new_task_row(
    t: NewTask,
    now: float,
    rank: float | None,
    claimed_by: tuple[str | None, float | None] | None = None,
    held: bool = False,
) -> tuple[object, ...]:
    """The `tasks` row (`NEW_TASK_COLUMNS`) of a new task; `rank`: its place in the
    claim order (`fairness.ranks`; None when not due yet or created claimed);
    `claimed_by`: (worker, lease expiry) of a task created claimed; `held`: a task
    its concurrency key does not admit yet (`concurrency.admit`)."""
    status = "queued" if claimed_by is None else "running"
    return (
        t.id,
        t.tenant,
        t.workflow,
        t.workflow_version,
        t.queue,
        t.priority,
        "waiting" if held else status,
        t.input,
        t.idempotency_key,
        t.correlation_id or t.id,
        t.created_by,
        None if held else (now if t.run_at is None else t.run_at),
        t.deadline,
        t.forked_from,
        t.fork_from_seq,
        t.parent_id,
        t.parent_seq,
        t.parent_policy,
        now,
        now,
        fairness.fair_key(t),
        rank,
        t.concurrency_key,
        "concurrency" if held else None,
        *((0, None, None, None) if claimed_by is None else (1, *claimed_by, now)),
        None if t.spend_budget is None else serde.dumps(t.spend_budget.to_json()),
    )


def new_task_record(t: NewTask, now: float, claimed: bool = False, held: bool = False) -> Task:
    """The `Task` a new task is once stored (`claimed`: created claimed; `held`: left
    waiting by its concurrency key)."""
    status = TaskStatus.RUNNING if claimed else TaskStatus.QUEUED
    return Task(
        id=t.id,
        tenant=t.tenant,
        workflow=t.workflow,
        workflow_version=t.workflow_version,
        queue=t.queue,
        priority=t.priority,
        status=TaskStatus.WAITING if held else status,
        wait_reason=WaitReason.CONCURRENCY if held else None,
        input=serde.loads(t.input),
        created_at=now,
        updated_at=now,
        idempotency_key=t.idempotency_key,
        correlation_id=t.correlation_id or t.id,
        created_by=t.created_by,
        attempt=1 if claimed else 0,
        run_at=None if held else (now if t.run_at is None else t.run_at),
        started_at=now if claimed else None,
        deadline=t.deadline,
        forked_from=t.forked_from,
        fork_from_seq=t.fork_from_seq,
        parent_id=t.parent_id,
        concurrency_key=t.concurrency_key,
        spend_budget=t.spend_budget,
    )


async def _new_task_events(
    conn: Conn, d: Dialect, fresh: list[NewTask], started: set[str], now: float, owner: str | None
) -> None:
    """`task.created` for each new task, then `task.started` for those created claimed."""
    if d.copy_rows:
        # PostgreSQL: COPY streams the rows faster than the server derives them.
        await events.insert(
            conn,
            [events.created(t, now) for t in fresh]
            + [events.started_eager(t, now, owner) for t in fresh if t.id in started],
        )
        return
    # SQLite: each row sent is a statement run bound from Python on the database thread;
    # the same events read from the rows just written cost no Python per task.
    await conn.execute(events.created_from_tasks(d), (now, d.list_param([t.id for t in fresh])))
    if started:
        await conn.execute(
            events.started_eager_from_tasks(d), (now, owner, d.list_param(sorted(started)))
        )
