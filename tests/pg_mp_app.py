"""A Tether app for the multi-process PostgreSQL tests
(tests/processes/test_postgres_multiprocess.py, tests/processes/test_postgres_restart.py).
Its one step records every execution in side tables of the same database: `mp_runs`
(when, on which worker), `mp_executions` (every run) and `mp_effects` (UNIQUE per
idempotency key: the effectively-once side effect)."""

from __future__ import annotations

import asyncio
import os
import time

import psycopg

from tether import Context, Tether
from tether.engine.context import current_step

URL = os.environ["MP_DB_URL"]
WORKER = os.environ.get("MP_WORKER_ID", "client")
STEP_SECONDS = float(os.environ.get("MP_STEP_SECONDS", "0.5"))


app = Tether(URL)


SIDE_RETRY_FOR = 120.0
"""Seconds a side-table statement is retried while the server is away (restarts, the
outage tests' stopped server)."""


async def _side(sql: str, params: tuple[object, ...]) -> int | None:
    """One statement on its own short-lived connection, retried while the server restarts."""
    deadline = time.monotonic() + SIDE_RETRY_FOR
    while time.monotonic() < deadline:
        try:
            async with await psycopg.AsyncConnection.connect(URL, autocommit=True) as conn:
                cur = await conn.execute(sql, params)
                row = await cur.fetchone() if cur.description else None
                return None if row is None else int(row[0])
        except psycopg.OperationalError:
            await asyncio.sleep(0.1)
    raise RuntimeError("side table unreachable")


async def effect(n: int) -> int:
    """The side effect: slow enough that a SIGKILL lands in the middle of it."""
    info = current_step()
    assert info is not None
    run_id = await _side(
        "INSERT INTO mp_runs (task_id, worker, started) VALUES (%s, %s, %s) RETURNING id",
        (info.task_id, WORKER, time.time()),
    )
    await _side(
        "INSERT INTO mp_executions (key, worker) VALUES (%s, %s)", (info.idempotency_key, WORKER)
    )
    await asyncio.sleep(STEP_SECONDS)
    await _side(
        "INSERT INTO mp_effects (key, task_id) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
        (info.idempotency_key, info.task_id),
    )
    await _side("UPDATE mp_runs SET ended = %s WHERE id = %s", (time.time(), run_id))
    return n * 2


@app.workflow("job")
async def job(ctx: Context, n: int) -> int:
    return await ctx.step("effect", effect, n)
