"""Dead-letter queries at scale (issue 17, goal: the group query under 100 ms with
1,000,000 failed tasks in 1,000 groups, both backends; ADR 79).

usage: python -m bench.dlq [sqlite|pg] [N] [G]     (default: both, N=1,000,000, G=1,000)

Fills a fresh database with N tasks of one tenant spread over G root causes (their
finish times over the last 48 hours), inserted `running` in bulk and then failed by
one `UPDATE` per 100,000 rows, so the `tasks_dead_letter` trigger counts every one (the
rate is printed). Then times, through the store (20 runs each, ms p50 / p95 / max):
the first page of 50 groups with their trends, the page after it, one group with its
trend and example, the first 50 tasks of a group, and its open tasks (what a retry
reads); and one bulk retry of a group of N/G tasks through `app.dlq.retry` (the forks
are created, not run). PostgreSQL: TETHER_BENCH_PG_URL (bench.common).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psycopg

from bench.common import fresh_database
from tether import Context, Tether

TENANT = "bench"
CHUNK = 100_000
COLUMNS = (
    "id, tenant, workflow, workflow_version, queue, status, input, error, "
    "error_fingerprint, correlation_id, attempt, created_at, updated_at, finished_at"
)


def build_app(url: str) -> Tether:
    app = Tether(database_url=url)

    @app.workflow("bench")
    async def bench(ctx: Context) -> None:
        return None

    return app


def rows(n: int, groups: int, now: float) -> Iterator[tuple[Any, ...]]:
    for i in range(n):
        g = i % groups
        fp = f"{g:016x}"
        error = json.dumps(
            {
                "type": "Permanent",
                "message": f"card declined for order {i} (cause {g})",
                "fingerprint": fp,
                "step": f"step-{g % 7}",
                "permanent": True,
            }
        )
        at = now - 172800 * (n - i) / n
        yield (f"{i:012d}", TENANT, "bench", 1, "default", "running", "null", error, fp,
               f"c{i}", 1, at, at, at)  # fmt: skip


def fill_sqlite(url: str, n: int, groups: int, now: float) -> float:
    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    db.execute("PRAGMA journal_mode=WAL")
    marks = ", ".join("?" * 14)
    with db:
        db.executemany(f"INSERT INTO tasks ({COLUMNS}) VALUES ({marks})", rows(n, groups, now))
    started = time.perf_counter()
    for low in range(0, n, CHUNK):
        with db:
            db.execute(
                "UPDATE tasks SET status = 'failed' WHERE id >= ? AND id < ?",
                (f"{low:012d}", f"{low + CHUNK:012d}"),
            )
    took = time.perf_counter() - started
    db.execute("ANALYZE")
    db.close()
    return took


def fill_pg(url: str, n: int, groups: int, now: float) -> float:
    with psycopg.connect(url, autocommit=True) as db:
        with db.cursor() as cur, cur.copy(f"COPY tasks ({COLUMNS}) FROM STDIN") as copy:
            for row in rows(n, groups, now):
                copy.write_row(row)
        started = time.perf_counter()
        for low in range(0, n, CHUNK):
            db.execute(
                "UPDATE tasks SET status = 'failed' WHERE id >= %s AND id < %s",
                (f"{low:012d}", f"{low + CHUNK:012d}"),
            )
        took = time.perf_counter() - started
        db.execute("VACUUM ANALYZE")
    return took


async def timed(call: Callable[[], Awaitable[Any]], runs: int = 20) -> str:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered) * 1000:7.2f} {p95 * 1000:7.2f} {ordered[-1] * 1000:7.2f}"


async def measure(backend: str, url: str, n: int, groups: int) -> None:
    app = build_app(url)
    await app.open()  # migrates the fresh database
    now = app.clock.now()
    fill = fill_sqlite if backend == "sqlite" else fill_pg
    took = await asyncio.to_thread(fill, url, n, groups, now)
    print(f"{backend}: {n:,} tasks failed in {took:.1f} s through the trigger "
          f"({n / took:,.0f} failures/s)")  # fmt: skip
    store = app.store
    first = await store.list_dlq_groups(TENANT, limit=51, now=now)
    assert len(first) == 51 and sum(g.open for g in await app.dlq.groups(
        tenant=TENANT, limit=groups)) == n  # fmt: skip
    after = (first[49].last_seen, first[49].fingerprint)
    fp = first[0].fingerprint
    checks: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("GET /v1/dlq: 50 groups", lambda: store.list_dlq_groups(TENANT, limit=51, now=now)),
        ("the next page", lambda: store.list_dlq_groups(TENANT, after=after, limit=51, now=now)),
        ("one group + trend + example", lambda: store.get_dlq_group(TENANT, fp, now)),
        ("its first 50 tasks", lambda: store.list_dlq_members(TENANT, fp, limit=51)),
        ("its open tasks (a retry's read)", lambda: store.dlq_open_tasks(TENANT, fp, None, 1000)),
    ]  # fmt: skip
    for name, call in checks:
        print(f"  {name:34} {await timed(call)}")
    started = time.perf_counter()
    done = await app.dlq.retry(fp, tenant=TENANT, by="bench")
    took = time.perf_counter() - started
    print(f"  bulk retry of {len(done.created):,} tasks in one call: {took * 1000:,.0f} ms")
    await app.close()


async def main(backends: list[str], n: int, groups: int) -> None:
    print(f"dead-letter queries, {n:,} failed tasks in {groups:,} groups (ms: p50 p95 max)")
    for backend in backends:
        with fresh_database(backend) as url:
            await measure(backend, url, n, groups)


if __name__ == "__main__":
    args = sys.argv[1:]
    chosen = [a for a in args if a in ("sqlite", "pg")] or ["sqlite", "pg"]
    numbers = [int(a.replace("_", "")) for a in args if a.replace("_", "").isdigit()]
    asyncio.run(main(chosen, *(numbers + [1_000_000, 1000][len(numbers) :])))
