"""W5 scale: claim throughput against a large history, and W1 across worker processes
(the memory of parked tasks is `bench/parked.py`)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, BinaryIO

from bench.apps import build_app
from bench.common import HERE, RESULTS_DIR, Sizes, log
from bench.completion import until_status
from tether import Tether
from tether.models import TaskStatus
from tether.store.base import Finish

CLAIMER = "bench-claimer"


# History --------------------------------------------------------------------------------


def _history_statements(backend: str, n: int, t0: float) -> list[str]:
    """SQL that bulk-inserts `n` finished single-step tasks with their step and event
    rows (what a real worker leaves behind), straight into the tables."""
    if backend == "sqlite":
        rows = f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) "
        source = "FROM c"
        ident = "printf('00000000-0000-7000-8000-%012d', x)"
    else:
        rows = ""
        source = f"FROM generate_series(1, {n}) AS c(x)"
        ident = "'00000000-0000-7000-8000-' || lpad(x::text, 12, '0')"
    at = f"({t0} + x * 0.001)"
    # Inserted as running, then finished: the store's triggers forbid writing the step
    # log of a task that has already ended.
    statements = [
        "INSERT INTO tasks (id, tenant, workflow, workflow_version, queue, priority, status, "
        "input, correlation_id, attempt, created_at, updated_at, started_at) "
        f"{rows}SELECT {ident}, 'default', 'noop', 1, 'default', 0, 'running', '0', {ident}, 1, "
        f"{at}, {at}, {at} {source}",
        "INSERT INTO steps (task_id, seq, name, kind, status, attempts, result, started_at, "
        "finished_at) SELECT id, 1, 'count', 'step', 'succeeded', 1, '1', started_at, "
        "started_at FROM tasks WHERE status = 'running' AND lease_owner IS NULL ORDER BY id",
    ]
    for kind, prior, new in (
        ("task.created", None, "queued"),
        ("task.started", "queued", "running"),
        ("step.succeeded", None, None),
        ("task.succeeded", "running", "succeeded"),
    ):
        statements.append(
            "INSERT INTO events (task_id, tenant, at, type, prior_status, new_status, attempt, "
            "worker, step, decision) SELECT id, tenant, started_at, "
            f"'{kind}', {_lit(prior)}, {_lit(new)}, 1, 'history', "
            f"{'NULL' if kind != 'step.succeeded' else _lit('count')}, 'history' FROM tasks "
            "WHERE status = 'running' AND lease_owner IS NULL ORDER BY id"
        )
    statements.append(
        "UPDATE tasks SET status = 'succeeded', result = '1', steps_done = 1, "
        "current_step = 'count', finished_at = started_at + 0.01, updated_at = started_at + 0.01 "
        "WHERE status = 'running' AND lease_owner IS NULL"
    )
    return statements


def _lit(value: str | None) -> str:
    return "NULL" if value is None else f"'{value}'"


def build_history(backend: str, url: str, n: int) -> float:
    """Insert `n` finished tasks into the (migrated) database at `url`; seconds taken."""
    t0 = time.perf_counter()
    statements = _history_statements(backend, n, time.time() - 30 * 86400)
    if backend == "sqlite":
        import sqlite3

        from tether.store.sqlite import parse_sqlite_url

        path, _ = parse_sqlite_url(url)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in statements:
                conn.execute(statement)
            conn.execute("COMMIT")
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(url) as pg:
            for statement in statements:
                pg.execute(statement)  # type: ignore[arg-type]
            pg.commit()
        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute("VACUUM ANALYZE")  # what autovacuum does to a table of this size
    return time.perf_counter() - t0


# Claim throughput -------------------------------------------------------------------------


async def _claim_all(app: Tether, sizes: Sizes) -> float:
    """Enqueue `w5_claim` tasks, claim them all in batches of `w5_claim_batch` with one
    claimer; tasks claimed per second. The claimed tasks are then finished, so they join
    the history."""
    await app.submit_many("noop", list(range(sizes.w5_claim)))
    store = app.store
    claimed = []
    t0 = time.perf_counter()
    while True:
        now = time.time()
        got = await store.claim(CLAIMER, ["default"], sizes.w5_claim_batch, now, now + 600)
        if not got:
            break
        claimed.extend(got)
    elapsed = time.perf_counter() - t0
    if len(claimed) != sizes.w5_claim:
        raise RuntimeError(f"claimed {len(claimed)} of {sizes.w5_claim} tasks")
    ops = [
        Finish(c.task.id, c.task.attempt, TaskStatus.SUCCEEDED, "1", None, "completed")
        for c in claimed
    ]
    await store.commit(ops, CLAIMER, time.time())
    return len(claimed) / elapsed


async def claim_empty(url: str, sizes: Sizes, run: int, backend: str) -> dict[str, float]:
    app = build_app(url)
    await app.open()
    try:
        return {"w5_claim_empty_per_s": await _claim_all(app, sizes)}
    finally:
        await app.close()


async def claim_history(url: str, sizes: Sizes, run: int, backend: str) -> dict[str, float]:
    """Same as `claim_empty`, on a database holding `w5_history` finished tasks (built
    on the first run; later runs reuse the database)."""
    app = build_app(url)
    await app.open()
    out: dict[str, float] = {}
    try:
        if run == 0:
            await app.close()
            log(f"W5: inserting {sizes.w5_history:,} finished tasks ...")
            out["w5_history_build_s"] = build_history(backend, url, sizes.w5_history)
            log(f"W5: history built in {out['w5_history_build_s']:.1f}s")
            app = build_app(url)
            await app.open()
        out["w5_claim_1m_per_s"] = await _claim_all(app, sizes)
        return out
    finally:
        await app.close()


# Worker processes -------------------------------------------------------------------------


def _worker_log() -> BinaryIO:
    """Where worker processes' stderr goes (kept for post-mortems)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    return open(RESULTS_DIR / "workers.log", "ab")


class Child:
    """One `bench.proc_worker` subprocess."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, url: str, concurrency: int, *, trace: bool = False) -> Child:
        """Start one and wait for its `ready`; `trace`: tracemalloc from its start."""
        with _worker_log() as errors:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.proc_worker",
                url,
                str(concurrency),
                *(["--trace"] if trace else []),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=errors,
                cwd=HERE.parent,
            )
        child = cls(proc)
        await child.expect("ready")
        return child

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, word: str, timeout: float = 60) -> str:
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), timeout)).decode().strip()
        if not line.startswith(word):
            raise RuntimeError(
                f"worker process said {line!r} instead of {word!r} (see {RESULTS_DIR}/workers.log)"
            )
        return line

    async def memory(self) -> dict[str, Any]:
        """The worker's `memory` line (bench/proc_worker.py), once it is idle."""
        await self.send("memory")
        data: dict[str, Any] = json.loads(await self.expect("{", timeout=120))
        return data

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.send("stop")
                await asyncio.wait_for(self.proc.wait(), 30)
            except (TimeoutError, ConnectionError):
                self.proc.kill()
                await self.proc.wait()


async def w1_procs(url: str, sizes: Sizes, procs: int) -> dict[str, float]:
    """W1 with `procs` worker processes, pre-started and held on a "go" line like the
    peers' workers; completion is a COUNT polled every 10 ms (as for the PostgreSQL
    peers), since the counter of each process sees only its own tasks."""
    app = build_app(url)
    await app.open()
    children = await asyncio.gather(*(Child.start(url, sizes.concurrency) for _ in range(procs)))
    try:
        t0 = time.perf_counter()
        await app.submit_many("noop", list(range(sizes.w1)))
        t_enq = time.perf_counter() - t0
        t1 = time.perf_counter()
        await asyncio.gather(*(c.send("go") for c in children))
        await until_status(app.store, TaskStatus.SUCCEEDED, sizes.w1, interval=0.01)
        t_drain = time.perf_counter() - t1
        return {
            f"w1_drain_s_procs_{procs}": t_drain,
            f"w1_tasks_per_s_procs_{procs}": sizes.w1 / (t_enq + t_drain),
        }
    finally:
        await asyncio.gather(*(c.stop() for c in children))
        await app.close()


def procs_workload(procs: int) -> Any:
    async def run(url: str, sizes: Sizes, run: int, backend: str) -> dict[str, float]:
        return await w1_procs(url, sizes, procs)

    return run
