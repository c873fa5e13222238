"""Several worker processes on one SQLite file: every task runs, and no task ever runs
on two workers at the same time (nor is any step executed twice)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import pytest

from apps.crashy import app as crashy
from apps.crashy import read_log
from apps.procs import WorkerProcess, wait_until
from tether import TaskFilter, TaskStatus, Tether

pytestmark = pytest.mark.slow

WORKERS = 3
TASKS = 45
STEPS = 3


async def test_worker_processes_never_run_one_task_at_the_same_time(
    db: tuple[Tether, str], tmp_path: Path
) -> None:
    app, url = db
    log = str(tmp_path / "effects.jsonl")
    workers = [WorkerProcess(url, f"w{i}", tmp_path, "--concurrency", "4") for i in range(WORKERS)]
    try:
        # Submit only when every worker is up, so that all of them compete for claims.
        for w in workers:
            await wait_until(
                lambda w=w: f"worker {w.worker_id} on queues" in w.output,
                30,
                f"{w.worker_id} to start",
                alive=workers,
            )
        await app.submit_batch(
            [
                crashy.new_task("few_steps", {"log": log, "delay": 0.05, "steps": STEPS})
                for _ in range(TASKS)
            ]
        )

        async def all_ended() -> bool:
            tasks = await app.list_tasks(TaskFilter(limit=TASKS + 1))
            return all(t.status.terminal for t in tasks)

        await wait_until(all_ended, 60, "every task to end", alive=workers)
        for w in workers:
            w.proc.terminate()
        for w in workers:
            assert await w.wait_exit(15) == 0, w.output
    finally:
        for w in workers:
            w.close()

    tasks = await app.list_tasks(TaskFilter(limit=TASKS + 1))
    assert len(tasks) == TASKS
    assert all(t.status == TaskStatus.SUCCEEDED for t in tasks)
    assert all(t.attempt == 1 for t in tasks), "a task was claimed more than once"

    # Execution intervals per task, from the steps' own records.
    opened: dict[tuple[str, int], dict[str, object]] = {}
    intervals: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for e in read_log(log):
        key = (str(e["task"]), int(e["seq"]))
        if e["event"] == "start":
            assert key not in opened, f"step {key} started twice"
            opened[key] = e
        else:
            start = opened[key]
            assert start["worker"] == e["worker"]
            intervals[key[0]].append((float(start["t"]), float(e["t"]), str(e["worker"])))
    assert len(intervals) == TASKS
    assert all(len(v) == STEPS for v in intervals.values())
    for task_id, spans in intervals.items():
        spans.sort()
        for (_s1, e1, w1), (s2, _e2, w2) in itertools.pairwise(spans):
            assert s2 >= e1, f"task {task_id}: {w1} and {w2} ran it at the same time"
        assert len({w for _, _, w in spans}) == 1, f"task {task_id} moved between workers"

    # Every worker got work (otherwise the test would prove nothing about contention).
    used = {spans[0][2] for spans in intervals.values()}
    assert len(used) >= 2, f"only {used} ran tasks"
