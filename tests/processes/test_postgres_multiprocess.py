"""Many machines on one PostgreSQL database: three worker processes with distinct ids and
a submitting process; one worker is SIGKILLed mid-run. Every task finishes, none runs on
two workers at once, and each side effect lands once per idempotency key."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mp import SIDE_TABLES, Proc, assert_no_overlap, query, wait_for
from tether import Tether

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

N = 60


async def test_three_workers_one_killed(pg_url: str, tmp_path: Path) -> None:
    # Schema and side tables first, so no process races to create them.
    app = Tether(pg_url)
    await app.open()
    await app.close()
    await query(pg_url, SIDE_TABLES)

    env = {"MP_STEP_SECONDS": "0.5", "MP_LEASE_TTL": "3", "MP_CONCURRENCY": "8"}
    workers = {
        name: await Proc.start(tmp_path, name, pg_url, "worker", **env)
        for name in ("w1", "w2", "w3")
    }
    try:
        for proc in workers.values():
            assert await proc.line() == "ready"
        submitter = await Proc.start(tmp_path, "submitter", pg_url, "submit", str(N))
        ids = json.loads(await submitter.line())
        assert await submitter.proc.wait() == 0
        assert len(ids) == N

        async def w2_mid_step() -> bool:
            rows = await query(
                pg_url, "SELECT count(*) FROM mp_runs WHERE worker = 'w2' AND ended IS NULL"
            )
            return bool(rows[0][0])

        await wait_for(w2_mid_step, 30, "w2 to be in the middle of a step")
        workers["w2"].kill()
        killed_at = time.time()
        await workers["w2"].proc.wait()
        in_flight = {
            r[0]
            for r in await query(
                pg_url, "SELECT task_id FROM mp_runs WHERE worker = 'w2' AND ended IS NULL"
            )
        }
        assert in_flight

        async def all_done() -> bool:
            rows = await query(pg_url, "SELECT count(*) FROM tasks WHERE status = 'succeeded'")
            return bool(rows[0][0] == N)

        await wait_for(all_done, 60, f"all {N} tasks to succeed", every=0.2)
        for name in ("w1", "w3"):
            assert await workers[name].stop() == 0, workers[name].tail()
    finally:
        for proc in workers.values():
            proc.kill()

    results = await query(pg_url, "SELECT id, status, result FROM tasks")
    assert {r[0] for r in results} == set(ids)
    assert all(r[1] == "succeeded" for r in results)
    # Side effects: once per key, although some steps ran more than once.
    effects = await query(pg_url, "SELECT count(*), count(DISTINCT key) FROM mp_effects")
    assert effects[0] == (N, N)
    execs = await query(pg_url, "SELECT count(*), count(DISTINCT key) FROM mp_executions")
    assert execs[0][1] == N and execs[0][0] >= N + len(in_flight)
    # No task ran on two workers at the same time.
    runs = await query(pg_url, "SELECT task_id, worker, started, ended FROM mp_runs")
    assert_no_overlap(runs, killed={"w2": killed_at})
    assert {r[1] for r in runs} == {"w1", "w2", "w3"}
    # The killed worker's tasks were recovered by the others, from their leases.
    for task_id in in_flight:
        finishers = {r[1] for r in runs if r[0] == task_id and r[3] is not None}
        assert finishers and "w2" not in finishers
    recovered = await query(
        pg_url, "SELECT DISTINCT task_id FROM events WHERE decision = 'lease_expired'"
    )
    assert in_flight <= {r[0] for r in recovered}
    print(
        f"{N} tasks, 3 workers, w2 killed with {len(in_flight)} in flight; "
        f"{execs[0][0]} step executions, {effects[0][0]} effects"
    )
