"""PostgreSQL-specific store behaviour: SKIP LOCKED claims, NOTIFY wake-ups, migrations,
schema checks, bad URLs, triggers, indexes and purge. (The shared contract suite runs on
PostgreSQL through the `store_url` fixture; this file covers what only PostgreSQL has.)"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from helpers import all_events
from tether import Context, Tether
from tether.errors import ConfigError, DatabaseUnavailable, SchemaOutOfDate
from tether.models import StepKind, StepRecord, StepStatus, TaskStatus, WaitReason
from tether.store import open_store
from tether.store.base import Finish, NewTask, StepWrite, Suspend
from tether.store.postgres import LATEST, MIGRATIONS, TASK_CHANNEL, PostgresStore, batch
from tether.store.postgres.conn import PgConn
from tether.store.sqlite import MIGRATIONS as SQLITE_MIGRATIONS

pytestmark = pytest.mark.postgres


def _app(url: str) -> Tether:
    app = Tether(url)

    @app.workflow("echo")
    async def echo(ctx: Context, value: int) -> int:
        return value

    return app


def _tasks(app: Tether, n: int, queue: str = "default") -> list[NewTask]:
    return [app.new_task("echo", i, queue=queue) for i in range(n)]


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(pg_url)
    await s.open(check_schema=False)
    await s.migrate()
    yield s
    await s.close()


async def test_open_store_picks_postgres(pg_url: str) -> None:
    for scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        s = open_store(pg_url.replace("postgresql", scheme, 1))
        assert isinstance(s, PostgresStore)
    assert s.url_for_display.startswith("postgresql://127.0.0.1:5432/tether_test_")


PG_ONLY_COLUMNS = {("events", "txid")}
"""Columns only PostgreSQL needs: the commit horizon of the event feed (ADR 13)."""


async def test_schema_mirrors_sqlite() -> None:
    """Both backends have the same migrations, so the shared SQL sees the same tables."""
    assert [v for v, _ in MIGRATIONS] == [v for v, _ in SQLITE_MIGRATIONS]


async def test_same_columns_as_sqlite(store: PostgresStore, pg_url: str, tmp_path: object) -> None:
    import sqlite3

    lite = sqlite3.connect(":memory:")
    for _, script in SQLITE_MIGRATIONS:
        lite.executescript(script)
    tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    tables = [t for t in tables if not t.startswith("sqlite_")]
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        for table in tables:
            want = [r[1] for r in lite.execute(f"PRAGMA table_info({table})")]
            cur = await conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = %s AND table_schema = current_schema() "
                "ORDER BY ordinal_position",
                (table,),
            )
            got = [r[0] for r in await cur.fetchall() if (table, r[0]) not in PG_ONLY_COLUMNS]
            assert got == want, table


async def test_concurrent_claimers_never_share_a_task(pg_url: str) -> None:
    app = _app(pg_url)
    await app.open()
    stores = [PostgresStore(pg_url) for _ in range(6)]
    try:
        for s in stores:
            await s.open()
        total = 400
        await app.store.submit(_tasks(app, total), time.time())
        claims: list[list[str]] = [[] for _ in stores]
        latencies: list[float] = []

        async def claimer(i: int) -> None:
            while True:
                now = time.time()
                t0 = time.perf_counter()
                got = await stores[i].claim(f"w{i}", ["default"], 10, now, now + 60)
                latencies.append(time.perf_counter() - t0)
                if not got:
                    return
                claims[i].extend(c.task.id for c in got)

        await asyncio.gather(*(claimer(i) for i in range(len(stores))))
        everything = [t for c in claims for t in c]
        assert len(everything) == total
        assert len(set(everything)) == total  # no task claimed twice
        assert sum(1 for c in claims if c) >= 2  # the claimers really overlapped
        print(f"claim of 10: p50 {statistics.median(latencies) * 1000:.2f} ms")
    finally:
        for s in stores:
            await s.close()
        await app.close()


@pytest.fixture
async def elsewhere(pg_url: str) -> AsyncIterator[tuple[Tether, PostgresStore]]:
    """A submitting app and another app's store, listening: what two processes hold."""
    submitter, listener = _app(pg_url), _app(pg_url)
    await submitter.open()
    await listener.open()
    try:
        store = listener.store
        assert isinstance(store, PostgresStore)
        await asyncio.wait_for(store.listening.wait(), 10)
        yield submitter, store
    finally:
        await submitter.close()
        await listener.close()


def _task_news(store: PostgresStore) -> asyncio.Queue[None]:
    """One item per task-change notification `store` hears, once it has handled it."""
    news: asyncio.Queue[None] = asyncio.Queue()
    dispatch = store._dispatch

    def recording(channel: str, payload: str, sender: int = 0) -> None:
        dispatch(channel, payload, sender)
        if channel == TASK_CHANNEL:
            news.put_nowait(None)

    store._dispatch = recording  # type: ignore[method-assign]
    return news


async def test_notify_wakes_another_store_within_milliseconds(
    elsewhere: tuple[Tether, PostgresStore],
) -> None:
    """Stores are what separate processes hold: only NOTIFY can carry the wake-up."""
    submitter, store = elsewhere
    event = store.hub.work_event("wakeq")
    latencies = []
    for _ in range(20):
        event.clear()
        t0 = time.perf_counter()
        await submitter.store.submit(_tasks(submitter, 1, queue="wakeq"), time.time())
        await asyncio.wait_for(event.wait(), 5)
        latencies.append(time.perf_counter() - t0)
    p50 = statistics.median(latencies)
    print(f"submit -> NOTIFY wake-up in another store: p50 {p50 * 1000:.2f} ms")
    assert p50 < 0.1

    # Task changes wake waiters in the other store too (TaskHandle.wait).
    (sub,) = await submitter.store.submit(_tasks(submitter, 1), time.time())
    now = time.time()
    (claimed,) = await submitter.store.claim("w", ["default"], 1, now, now + 60)
    fut = store.hub.wait_task(sub.task.id)
    t0 = time.perf_counter()
    await submitter.store.commit(
        [Finish(sub.task.id, claimed.task.attempt, TaskStatus.SUCCEEDED, result="1")],
        "w",
        time.time(),
    )
    assert (await asyncio.wait_for(fut, 5)).status == "succeeded"
    print(f"finish -> waiter in another store: {(time.perf_counter() - t0) * 1000:.2f} ms")


async def test_a_batch_of_ends_is_one_notification_and_wakes_every_waiter(
    elsewhere: tuple[Tether, PostgresStore],
) -> None:
    """Task-change notifications fold into one per transaction (ADR 57); the listening
    store reads its waiters' tasks and wakes each of them with its status."""
    submitter, store = elsewhere
    news = _task_news(store)
    subs = await submitter.store.submit(_tasks(submitter, 20), time.time())
    now = time.time()
    claimed = await submitter.store.claim("w", ["default"], 20, now, now + 60)
    assert len(claimed) == 20
    waits = [store.hub.wait_task(c.task.id) for c in claimed]
    ends = [
        Finish(c.task.id, c.task.attempt, TaskStatus.SUCCEEDED if i % 2 else TaskStatus.FAILED)
        for i, c in enumerate(claimed)
    ]
    assert await submitter.store.commit(ends, "w", time.time()) == [True] * 20
    changes = await asyncio.wait_for(asyncio.gather(*waits), 5)
    assert [c.status for c in changes] == [str(e.status) for e in ends]
    assert news.qsize() == 1
    assert {s.task.id for s in subs} == {c.task.id for c in claimed}


async def test_a_waiter_on_a_waiting_task_sleeps_through_other_tasks_news(
    elsewhere: tuple[Tether, PostgresStore],
) -> None:
    """Task-change notifications no longer name the task (ADR 57): the listening store
    reads its waiters' tasks, and must wake only those whose row changed since their
    waiters read it, not everyone whose task merely is still waiting."""
    submitter, store = elsewhere
    news = _task_news(store)
    subs = await submitter.store.submit(_tasks(submitter, 3), time.time())
    now = time.time()
    parked, *others = await submitter.store.claim("w", ["default"], 3, now, now + 60)
    park = Suspend(parked.task.id, parked.task.attempt, WaitReason.TIMER, now + 3600)
    assert await submitter.store.commit([park], "w", time.time()) == [True]
    await asyncio.wait_for(news.get(), 5)  # the park's own news has come and gone
    if store._refresher is not None:
        await store._refresher
    fut = store.hub.wait_task(parked.task.id)
    task = await store.get_task(parked.task.id)  # the waiter reads the waiting task
    assert task is not None and task.status == TaskStatus.WAITING
    for other in others:  # news of other tasks, one notification each
        end = Finish(other.task.id, other.task.attempt, TaskStatus.SUCCEEDED, "1")
        assert await submitter.store.commit([end], "w", time.time()) == [True]
        await asyncio.wait_for(news.get(), 5)
        assert store._refresher is not None
        await store._refresher
        assert not fut.done()
    await submitter.cancel(parked.task.id)  # its own news wakes it
    assert (await asyncio.wait_for(fut, 5)).status == "cancelled"
    assert len(subs) == 3


async def test_idle_worker_starts_work_submitted_elsewhere_without_polling(pg_url: str) -> None:
    """With a 30 s poll interval, only NOTIFY can start the task promptly."""
    worker_app, client = _app(pg_url), _app(pg_url)
    await client.open()
    try:
        async with worker_app.worker(concurrency=4, poll_interval=30.0):
            store = worker_app.store
            assert isinstance(store, PostgresStore)
            await asyncio.wait_for(store.listening.wait(), 10)
            await asyncio.sleep(0.2)  # let the worker go idle (its first claim found nothing)
            starts = []
            for i in range(10):
                t0 = time.perf_counter()
                handle = await client.submit("echo", i)
                assert await handle.result(timeout=5) == i
                starts.append(time.perf_counter() - t0)
            p50 = statistics.median(starts)
            print(f"submit -> result across stores (no polling): p50 {p50 * 1000:.2f} ms")
            assert max(starts) < 2.0
    finally:
        await client.close()
        await worker_app.close()


async def test_concurrent_migrations(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(4)]
    try:
        for s in stores:
            await s.open(check_schema=False)
        results = await asyncio.gather(*(s.migrate() for s in stores))
        assert sorted(results) == [[], [], [], [v for v, _ in MIGRATIONS]]
        assert await stores[0].schema_version() == LATEST
    finally:
        for s in stores:
            await s.close()


async def test_concurrent_auto_migration_of_an_empty_database(pg_url: str) -> None:
    apps = [_app(pg_url) for _ in range(3)]
    try:
        await asyncio.gather(*(a.open() for a in apps))
        handles = [await a.submit("echo", 1) for a in apps]
        assert len({h.id for h in handles}) == 3
    finally:
        for a in apps:
            await a.close()


async def test_older_schema_refuses_to_start(store: PostgresStore, pg_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute("DELETE FROM tether_schema WHERE version = %s", (LATEST,))
    fresh = PostgresStore(pg_url)
    with pytest.raises(SchemaOutOfDate, match="run `tether migrate`"):
        await fresh.open()
    app = _app(pg_url)  # a non-empty database is never migrated behind the user's back
    with pytest.raises(SchemaOutOfDate):
        await app.open()
    await app.close()


async def test_refused_connection_names_host_and_database_not_password() -> None:
    s = PostgresStore("postgresql://alice:sekrit@127.0.0.1:1/payments")
    with pytest.raises(DatabaseUnavailable) as info:
        await s.open()
    message = str(info.value)
    assert "127.0.0.1:1" in message and "'payments'" in message
    assert "sekrit" not in message
    assert isinstance(info.value, ConfigError)


async def test_missing_database(pg_database: str) -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:5432/{pg_database}_missing"
    with pytest.raises(DatabaseUnavailable) as info:
        await PostgresStore(url).open()
    message = str(info.value)
    assert f"'{pg_database}_missing'" in message and "does not exist" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bob:pw9@127.0.0.1:notaport/db",
        "postgresql://bob:pw9@127.0.0.1/db?pool_max=lots",
        "postgresql://bob:pw9@127.0.0.1/db?pool_min=5&pool_max=2",
    ],
)
async def test_malformed_url(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        PostgresStore(url)
    assert "pw9" not in str(info.value)


async def test_terminal_states_and_events_are_immutable(store: PostgresStore, pg_url: str) -> None:
    app = _app(pg_url)
    (sub,) = await store.submit(_tasks(app, 1), time.time())
    now = time.time()
    (claimed,) = await store.claim("w", ["default"], 1, now, now + 60)
    await store.commit(
        [Finish(sub.task.id, claimed.task.attempt, TaskStatus.FAILED, result=None)], "w", now
    )
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.IntegrityError, match="terminal state"):
            await conn.execute("UPDATE tasks SET status = 'queued' WHERE id = %s", (sub.task.id,))
        with pytest.raises(psycopg.errors.IntegrityError, match="step log"):
            await conn.execute(
                "INSERT INTO steps (task_id, seq, name, kind, status) "
                "VALUES (%s, 1, 'x', 'step', 'succeeded')",
                (sub.task.id,),
            )
        with pytest.raises(psycopg.errors.IntegrityError, match="append-only"):
            await conn.execute("UPDATE events SET type = 'x' WHERE task_id = %s", (sub.task.id,))
    task = await store.get_task(sub.task.id)
    assert task is not None and task.status == TaskStatus.FAILED


async def test_claim_uses_the_partial_index_with_much_history(
    store: PostgresStore, pg_url: str
) -> None:
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO tasks (id, tenant, workflow, workflow_version, queue, status, input, "
            "correlation_id, created_at, updated_at, finished_at) "
            "SELECT 'old-' || g, 'default', 'echo', 1, 'default', 'succeeded', '1', "
            "'old-' || g, g, g, g FROM generate_series(1, 50000) g"
        )
        await conn.execute("ANALYZE tasks")
        cur = await conn.execute(
            "EXPLAIN SELECT id, status FROM tasks WHERE status = 'queued' "
            "AND fair_rank IS NOT NULL AND queue = 'default' AND run_at <= 1e12 "
            "ORDER BY fair_rank LIMIT 10 FOR UPDATE SKIP LOCKED"
        )
        plan = "\n".join(r[0] for r in await cur.fetchall())
    assert "tasks_fair" in plan, plan
    assert "Seq Scan" not in plan, plan


async def test_a_claim_reads_only_what_it_takes_from_a_backlog(
    store: PostgresStore, pg_url: str
) -> None:
    """With one queue, the queued-work scan walks `tasks_fair` in claim order and
    stops at the limit, instead of reading and sorting the whole backlog every claim."""
    app = _app(pg_url)
    await store.submit(_tasks(app, 2000) + _tasks(app, 2000, queue="other"), 1000.0)
    plans: list[Any] = []

    class Explain(PgConn):
        async def fetchall(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
            cur = await self._conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + text, params)
            row = await cur.fetchone()
            assert row is not None
            plans.append(row["QUERY PLAN"][0]["Plan"])
            return []

    async with await psycopg.AsyncConnection.connect(pg_url, row_factory=dict_row) as conn:
        await batch.claim(Explain(conn), "w", ["default"], 10, 2000.0, 3000.0, [("echo", 1)])
        await conn.rollback()
        # Several queues: each is scanned up to the limit, then the few rows are sorted.
        await batch.claim(Explain(conn), "w", ["default", "other"], 10, 2000.0, 3000.0, None)
        await conn.rollback()

    def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield plan
        for child in plan.get("Plans", ()):
            yield from nodes(child)

    for plan in plans:
        scans = [n for n in nodes(plan) if n.get("Index Name") == "tasks_fair"]
        assert scans and all(n["Actual Rows"] <= 10 for n in scans), scans
    assert len(plans) == 2


async def test_a_claim_commits_without_waiting_for_the_disk(
    store: PostgresStore, pg_url: str
) -> None:
    """ADR 75: the claim's transaction turns `synchronous_commit` off for itself only
    (seen inside a transaction that holds the claim; the connection's setting after it
    is untouched)."""
    app = _app(pg_url)
    await store.submit(_tasks(app, 1), 1000.0)
    async with await psycopg.AsyncConnection.connect(pg_url, row_factory=dict_row) as conn:
        async with conn.transaction():
            outcome = await batch.claim(PgConn(conn), "w", ["default"], 1, 2000.0, 3000.0, None)
            assert len(outcome.claimed) == 1
            row = await (await conn.execute("SHOW synchronous_commit")).fetchone()
            assert row is not None and row["synchronous_commit"] == "off"
        row = await (await conn.execute("SHOW synchronous_commit")).fetchone()
        assert row is not None and row["synchronous_commit"] == "on"


async def test_completions_with_their_last_steps_are_one_statement(
    store: PostgresStore, pg_url: str
) -> None:
    """ADR 78: a batch of completions that carry their last step results is one
    autocommit statement (no BEGIN/COMMIT round trips); the steps go in before any task
    ends (else the step-log trigger would refuse them), a stale attempt's not at all."""
    app = _app(pg_url)
    await store.submit(_tasks(app, 20), 1000.0)
    claimed = await store.claim("w", ["default"], 20, 2000.0, 3000.0, None)
    assert len(claimed) == 20

    def finish(task_id: str, attempt: int) -> Finish:
        step = StepRecord(task_id, 1, "one", StepKind.STEP, StepStatus.SUCCEEDED, result=7)
        return Finish(
            task_id, attempt, TaskStatus.SUCCEEDED, "7", steps=(StepWrite(task_id, attempt, step),)
        )

    ops = [finish(c.task.id, c.task.attempt) for c in claimed[:19]]
    ops.append(finish(claimed[19].task.id, claimed[19].task.attempt + 1))  # stale: fenced
    seen: list[str] = []

    class Recording(PgConn):
        async def fetchall(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
            seen.append(text)
            return await super().fetchall(text, params)

        async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
            seen.append(text)
            return await super().execute(text, params)

    async with await psycopg.AsyncConnection.connect(
        pg_url, row_factory=dict_row, autocommit=True
    ) as conn:
        applied = await batch.apply_ops(Recording(conn), ops, "w", 2500.0)
    assert applied == [True] * 19 + [False]
    assert len(seen) == 1
    for c in claimed[:19]:
        assert [s.result for s in await store.get_steps(c.task.id)] == [7]
        task = await store.get_task(c.task.id)
        assert task is not None and task.status == TaskStatus.SUCCEEDED
    assert await store.get_steps(claimed[19].task.id) == []


async def test_a_few_plain_submits_are_one_statement(
    store: PostgresStore, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ADR 78: plain tasks (no idempotency key, no callback) and their `task.created`
    events go in one autocommit statement; a keyed one takes the shared transaction."""
    import tether.store.postgres as pg_store

    seen: list[str] = []

    class Recording(PgConn):
        async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
            seen.append(text)
            return await super().execute(text, params)

        async def fetchone(self, text: str, params: Sequence[Any] = ()) -> Any:
            seen.append(text)
            return await super().fetchone(text, params)

        async def insert_rows(self, table: str, columns: str, rows: Sequence[Any]) -> None:
            seen.append(f"insert {table}")
            await super().insert_rows(table, columns, rows)

    monkeypatch.setattr(pg_store, "PgConn", Recording)
    app = _app(pg_url)
    plain = await store.submit(_tasks(app, 3), 1000.0)
    assert len(seen) == 1 and seen[0].startswith("WITH f AS (INSERT INTO fair_queues")
    for s in plain:
        task = await store.get_task(s.task.id)
        assert task is not None and task.status == TaskStatus.QUEUED and task == s.task
        (created,) = await all_events(store, s.task.id)
        assert (created.type, created.new_status, created.data["workflow"]) == (
            "task.created",
            "queued",
            "echo",
        )
    seen.clear()
    keyed = app.new_task("echo", 9, idempotency_key="k-1")
    await store.submit([keyed], 1001.0)
    assert "insert tasks" in seen and not any(t.startswith("WITH t AS") for t in seen)


async def test_purge_in_batches(store: PostgresStore, pg_url: str) -> None:
    app = _app(pg_url)
    subs = await store.submit(_tasks(app, 7), 1000.0)
    claimed = await store.claim("w", ["default"], 7, 1000.0, 2000.0)
    await store.commit(
        [Finish(c.task.id, c.task.attempt, TaskStatus.SUCCEEDED, result="1") for c in claimed],
        "w",
        1001.0,
    )
    (live,) = await store.submit(_tasks(app, 1), 1002.0)
    assert await store.purge(1500.0, batch=3) == 3
    assert await store.purge(1500.0, batch=3) == 3
    assert await store.purge(1500.0, batch=3) == 1
    assert await store.purge(1500.0, batch=3) == 0
    for s in subs:
        assert await store.get_task(s.task.id) is None
        assert await store.list_events(task_id=s.task.id) == []
    assert await store.get_task(live.task.id) is not None


async def test_event_feed_never_skips_an_event_committed_late(
    store: PostgresStore, pg_url: str
) -> None:
    """Ids are taken in allocation order; a reader must not see a newer id before an
    older one still being committed (ADR 13)."""
    app = _app(pg_url)
    tasks = _tasks(app, 2)
    a, b = (t.id for t in tasks)
    await store.submit(tasks, time.time())
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        cur = await conn.execute("SELECT MAX(id) FROM events")
        (after,) = await cur.fetchone() or (0,)
    insert = "INSERT INTO events (task_id, tenant, at, type) VALUES (%s, 'default', %s, %s)"
    async with (
        await psycopg.AsyncConnection.connect(pg_url) as slow,
        await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as fast,
    ):
        # `slow` takes an event id first and stays open; `fast` takes a later id and commits.
        await slow.execute(insert, (a, time.time(), "x.slow"))
        await fast.execute(insert, (b, time.time(), "x.fast"))
        visible = [e.type for e in await store.list_events(after=after)]
        assert visible == [], "the later event must wait for the earlier transaction"
        await slow.commit()
    # Both appear, in id order, as soon as no older transaction is running (another
    # client's long transaction on this shared server can hold them back up to 5 s).
    deadline = time.monotonic() + 10
    while True:
        visible = [e.type for e in await store.list_events(after=after)]
        if visible or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert visible == ["x.slow", "x.fast"]
    await app.close()


async def test_one_statement_claim_returns_what_the_shared_claim_returns(
    store: PostgresStore, pg_url: str
) -> None:
    """The PostgreSQL claim (one statement, JSON-aggregated replay state) against the
    shared `sql.claim`, on a task with a step log, a pending signal and an approval."""
    from tether.models import Approval, StepKind, StepRecord, StepStatus
    from tether.store import sql
    from tether.store.base import OpenApproval, Release, StepWrite

    app = _app(pg_url)
    (sub,) = await store.submit(_tasks(app, 1), time.time())
    task_id = sub.task.id
    now = time.time()
    (first,) = await store.claim("w1", ["default"], 10, now, now + 60, [("echo", 1)])
    assert first.steps == {} and first.signals == [] and not first.recovered
    record = StepRecord(
        task_id,
        1,
        "fetch",
        StepKind.STEP,
        StepStatus.SUCCEEDED,
        result={"x": [1, 2.5]},
        started_at=now,
        finished_at=now + 0.25,
        meta={"cost": 0.1},
    )
    approval = Approval(
        "ap-1",
        task_id,
        sub.task.tenant,
        2,
        "pending",
        "high",
        {"amount": 5},
        2,
        "me",
        now,
        expires_at=now + 99,
        workflow="echo",
    )
    attempt = first.task.attempt
    assert await store.commit(
        [
            StepWrite(task_id, attempt, record),
            OpenApproval(task_id, attempt, approval),
            Release(task_id, attempt),
        ],
        "w1",
        now,
    ) == [True, True, True]
    await store.send_signal(task_id, None, "go", '{"ok": true}', now)

    (ours,) = await store.claim("w2", ["default"], 10, now + 1, now + 60, [("echo", 1)])
    assert ours.task.attempt == attempt + 1 and ours.task.status == TaskStatus.RUNNING
    assert await store.commit([Release(task_id, ours.task.attempt)], "w2", now + 1) == [True]
    outcome = await store._run(
        lambda c: sql.claim(
            c, sql.POSTGRES, "w3", ["default"], 10, now + 2, now + 60, [("echo", 1)]
        )
    )
    (shared,) = outcome.claimed
    assert ours.steps == shared.steps and ours.steps[1].result == {"x": [1, 2.5]}
    assert ours.signals == shared.signals and [s.name for s in ours.signals] == ["go"]
    assert ours.approvals == shared.approvals and ours.approvals[2].request == {"amount": 5}
    events = await all_events(store, task_id)
    started = [e for e in events if e.type == "task.started"]
    assert [(e.worker, e.decision, e.prior_status) for e in started] == [
        ("w1", "claimed", "queued"),
        ("w2", "claimed", "queued"),
        ("w3", "claimed", "queued"),
    ]
