"""Fair claiming across two worker processes, on both backends: tenant B's few tasks,
submitted behind tenant A's backlog, take turns with it, whichever worker claims
next (the order is the database's, not a worker's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.crashy import app as crashy
from apps.crashy import read_log
from apps.procs import WorkerProcess, wait_until
from tether import TaskFilter, Tether

pytestmark = pytest.mark.slow

BACKLOG = 60
FEW = 5


async def test_a_later_tenant_takes_turns_with_a_backlog_across_processes(
    store_url: str, tmp_path: Path
) -> None:
    app = Tether(store_url)
    await app.open()
    log = str(tmp_path / "effects.jsonl")
    # Submitted before the workers start: the whole backlog is queued when B arrives.
    task = {"log": log, "delay": 0.02, "steps": 1}
    await app.submit_batch([crashy.new_task("few_steps", task, tenant="a") for _ in range(BACKLOG)])
    few = await app.submit_batch(
        [crashy.new_task("few_steps", task, tenant="b") for _ in range(FEW)]
    )
    b_ids = {h.id for h in few}
    workers = [WorkerProcess(store_url, f"w{i}", tmp_path, "--concurrency", "1") for i in range(2)]
    try:

        async def all_ended() -> bool:
            tasks = await app.list_tasks(TaskFilter(limit=BACKLOG + FEW + 1))
            return all(t.status.terminal for t in tasks)

        await wait_until(all_ended, 90, "every task to end", alive=workers)
    finally:
        for w in workers:
            w.proc.terminate()
        for w in workers:
            await w.wait_exit(15)
            w.close()
        await app.close()
    starts = sorted(
        (float(e["t"]), str(e["task"]), str(e["worker"]))
        for e in read_log(log)
        if e["event"] == "start"
    )
    assert len(starts) == BACKLOG + FEW
    b_places = [i for i, (_, task_id, _) in enumerate(starts) if task_id in b_ids]
    # Both keys were idle when they submitted, so they start level and take turns: B's
    # tasks are among the first 2 x FEW started (first come would start them last).
    assert max(b_places) < 2 * FEW + 2, b_places
    assert {w for _, _, w in starts} == {"w0", "w1"}
