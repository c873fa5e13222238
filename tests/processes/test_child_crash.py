"""Crash test for child workflows: SIGKILL the worker while a parent's children are
being started; a new worker finishes the parent, and no child was started twice."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

from apps.crashy import app as crashy
from apps.crashy import read_log
from apps.procs import WorkerProcess, wait_until
from tether import TaskFilter, TaskStatus, Tether

pytestmark = pytest.mark.slow

COUNT = 300


async def test_sigkill_while_children_start_starts_no_child_twice(
    store_url: str, tmp_path: Path
) -> None:
    app = Tether(store_url)
    await app.open()
    log, marker = str(tmp_path / "effects.jsonl"), str(tmp_path / "killed")
    new = crashy.new_task("fan_children", {"log": log, "count": COUNT, "kill_marker": marker})
    (parent,) = await app.submit_batch([new])
    workers: list[WorkerProcess] = []
    try:
        w1 = WorkerProcess(store_url, "w1", tmp_path, "--lease-ttl", "1")
        workers.append(w1)
        await wait_until(lambda: os.path.exists(marker), 30, "a child to kill w1", alive=[w1])
        assert await w1.wait_exit(10) != 0
        # At the kill, the children were stored (one submission) and the first of them
        # ran, but the parent's log had not recorded all their starts: the window where
        # a replay that started children again would start them twice.
        stored = await app.list_tasks(TaskFilter(parent_id=parent.id, limit=2 * COUNT))
        recorded = len(await app.store.get_steps(parent.id))
        assert len(stored) == COUNT and recorded < COUNT, (len(stored), recorded)

        w2 = WorkerProcess(store_url, "w2", tmp_path, "--lease-ttl", "1")
        workers.append(w2)

        async def ended() -> bool:
            return (await app.get(parent.id)).status.terminal

        await wait_until(ended, 60, "the parent to end on w2", alive=[w2])
        task = await app.get(parent.id)
        assert task.status == TaskStatus.SUCCEEDED, task.error
        assert task.result == sum(range(COUNT))
        w2.proc.terminate()
        assert await w2.wait_exit(15) == 0, w2.output
        children = await app.list_tasks(TaskFilter(parent_id=parent.id, limit=2 * COUNT))
        steps = await app.store.get_steps(parent.id)
    finally:
        for w in workers:
            w.close()
        await app.close()
    # Exactly one child per call site, whatever the replay found.
    assert len(children) == COUNT
    assert sorted(c.input["index"] for c in children) == list(range(COUNT))
    assert {c.idempotency_key for c in children} == {
        f"child:{parent.id}:{seq}" for seq in range(1, COUNT + 1)
    }
    assert len(steps) == COUNT and {s.meta["child_id"] for s in steps} == {c.id for c in children}
    # Every child's effect ran for that child only; an index never ran in two tasks.
    tasks_by_index: dict[int, set[str]] = defaultdict(set)
    for line in read_log(log):
        tasks_by_index[int(line["index"])].add(str(line["task"]))
    assert set(tasks_by_index) == set(range(COUNT))
    assert all(len(ids) == 1 for ids in tasks_by_index.values())
    print(f"at the kill: {COUNT} children stored, {recorded} starts recorded by the parent")
