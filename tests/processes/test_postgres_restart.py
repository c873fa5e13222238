"""Connection loss: the PostgreSQL server restarts in the middle of a run. Worker
processes and an API-like client (this process) reconnect and carry on; no task is lost,
none runs twice at once, every side effect lands once.

This restarts the machine's real server (`pg_ctlcluster ... restart`), which other test
sessions on the machine share: it is one test, marked slow, that waits for the server to
be back before it ends."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest

import pg
from mp import SIDE_TABLES, Proc, assert_no_overlap, query, wait_for
from tether import Context, Tether
from tether.store.postgres import PostgresStore

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

N_BEFORE, N_AFTER = 30, 10


def _cluster() -> list[str]:
    """The command that restarts the local test server; without one, skip (and under
    CI=true fail: CI provides the cluster, and a PostgreSQL test never skips there)."""
    ctl = shutil.which("pg_ctlcluster")
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*") if p.is_dir())
    if ctl is None or not versions or pg.where() != "127.0.0.1:5432":
        reason = "needs the machine's own PostgreSQL cluster (pg_ctlcluster) on :5432"
        if pg.IN_CI:
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must not be skipped)")
        pytest.skip(reason)
    return [ctl, "--skip-systemctl-redirect", versions[-1], "main", "restart"]


async def test_server_restart_mid_run(pg_url: str, tmp_path: Path) -> None:
    restart = _cluster()
    client = Tether(pg_url)

    @client.workflow("job")
    async def job(ctx: Context, n: int) -> int:  # registered for submit; runs elsewhere
        raise AssertionError("the client runs no tasks")

    await client.open()
    await query(pg_url, SIDE_TABLES)
    env = {"MP_STEP_SECONDS": "0.4", "MP_LEASE_TTL": "15", "MP_CONCURRENCY": "6"}
    workers = [await Proc.start(tmp_path, name, pg_url, "worker", **env) for name in ("r1", "r2")]
    try:
        for proc in workers:
            assert await proc.line() == "ready"
        submitter = await Proc.start(tmp_path, "submitter", pg_url, "submit", str(N_BEFORE))
        ids = json.loads(await submitter.line())
        assert await submitter.proc.wait() == 0

        async def mid_step() -> bool:
            rows = await query(pg_url, "SELECT count(*) FROM mp_runs WHERE ended IS NULL")
            return bool(rows[0][0])

        await wait_for(mid_step, 30, "a step in flight")
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *restart, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode()
        await asyncio.to_thread(pg.wait_until_up, 60)
        down = time.monotonic() - t0

        # The API side carries on: submits and waits on the same (recovered) pool.
        t1 = time.monotonic()
        handles = [
            await client.submit("job", 100 + i, idempotency_key=f"after-{i}")
            for i in range(N_AFTER)
        ]
        first_submit = time.monotonic() - t1
        for h in handles:
            assert await h.result(timeout=60) == 2 * (100 + handles.index(h))
        store = client.store
        assert isinstance(store, PostgresStore)
        await asyncio.wait_for(store.listening.wait(), 30)  # the listener is back too

        async def all_done() -> bool:
            rows = await query(pg_url, "SELECT count(*) FROM tasks WHERE status = 'succeeded'")
            return bool(rows[0][0] == N_BEFORE + N_AFTER)

        await wait_for(all_done, 60, "every task to succeed", every=0.2)
        for proc_ in workers:  # the same worker processes, still alive, stop cleanly
            assert proc_.proc.returncode is None, proc_.tail()
            assert await proc_.stop() == 0, proc_.tail()
    finally:
        for proc_ in workers:
            proc_.kill()
        await client.close()
        await asyncio.to_thread(pg.wait_until_up, 60)

    tasks = await query(pg_url, "SELECT id, status FROM tasks")
    assert len(tasks) == N_BEFORE + N_AFTER and set(ids) <= {t[0] for t in tasks}
    effects = await query(pg_url, "SELECT count(*), count(DISTINCT key) FROM mp_effects")
    assert effects[0] == (N_BEFORE + N_AFTER,) * 2
    runs = await query(pg_url, "SELECT task_id, worker, started, ended FROM mp_runs")
    assert_no_overlap(runs, killed={})
    print(
        f"restart took {down:.2f}s until the server answered; first submit after it "
        f"{first_submit * 1000:.0f} ms; {len(runs)} step runs for "
        f"{N_BEFORE + N_AFTER} tasks"
    )
