"""One bucket across two worker processes, on both backends: two `tether worker`
processes run tasks whose step calls the rate-limited integration `crm` (10 a second,
a burst of one; tests/apps/ratelimited.py), and the calls they make together keep to
that rate. Each call appends when it ran to a side file; in every stretch of time
between two calls there were at most one plus ten a second of them (with a little
slack for the moment between a take and the call). Two buckets of their own would
have admitted twice that. And the bucket is not starved either: the calls run close to
its rate, both workers make some, and steps over the limit waited as `rate_limit`."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from apps.procs import WorkerProcess, wait_until
from apps.ratelimited import RATE
from tether import TaskFilter, TaskStatus, Tether

pytestmark = pytest.mark.slow

TASKS = 30
SLACK = 0.1
"""Seconds a call may run after its take (a step is scheduled, a thread or the loop
is busy): two calls taken 1/RATE apart may be seen up to this much closer."""


async def test_two_worker_processes_share_one_bucket(store_url: str, tmp_path: Path) -> None:
    app = Tether(store_url)
    await app.open()
    log = tmp_path / "calls.jsonl"
    env = {"TETHER_POLL_INTERVAL": "0.2"}
    workers = [
        WorkerProcess(
            store_url, f"w{i}", tmp_path, "--concurrency", "8", app="apps.ratelimited:app", env=env
        )
        for i in range(2)
    ]
    try:
        for w in workers:
            await wait_until(
                lambda w=w: f"worker {w.worker_id} on queues" in w.output,
                30,
                f"{w.worker_id} to start",
                alive=workers,
            )
        from apps.ratelimited import app as limited

        await app.submit_batch(
            [limited.new_task("limited", {"log": str(log)}) for _ in range(TASKS)]
        )

        async def held() -> bool:
            tasks = await app.list_tasks(TaskFilter(status=[TaskStatus.WAITING], limit=TASKS))
            return any(t.wait_reason == "rate_limit" for t in tasks)

        await wait_until(held, 30, "a step to wait for the bucket", alive=workers)

        async def all_done() -> bool:
            tasks = await app.list_tasks(TaskFilter(limit=TASKS + 1))
            return sum(t.status == TaskStatus.SUCCEEDED for t in tasks) == TASKS

        await wait_until(all_done, 60, "every task to succeed", alive=workers)
        for w in workers:
            w.proc.terminate()
        for w in workers:
            assert await w.wait_exit(15) == 0, w.output
    finally:
        for w in workers:
            w.close()
        await app.close()

    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == TASKS
    assert len({c["task"] for c in calls}) == TASKS  # each once
    assert {c["worker"] for c in calls} == {"w0", "w1"}
    times = sorted(float(c["t"]) for c in calls)
    for (i, first), (j, last) in itertools.combinations(enumerate(times), 2):
        admitted = j - i + 1
        allowed = 1 + RATE * (last - first + SLACK)
        assert admitted <= allowed, (
            f"{admitted} calls in {last - first:.3f}s: the bucket admits {allowed:.1f}"
        )
    span = times[-1] - times[0]
    assert span <= 2 * (TASKS - 1) / RATE, f"{TASKS} calls took {span:.2f}s: the bucket starved"
