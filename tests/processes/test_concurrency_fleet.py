"""Concurrency keys across two worker processes (one slot each), on both backends: a
key of `max=1` never has two holders at once (the steps' own timestamps, from a side
file fsynced by each process, prove it), while different keys run side by side."""

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

PER_CUSTOMER = 4
CUSTOMERS = ("acme", "globex", "initech", "umbrella")


async def test_a_key_never_has_two_holders_across_processes(store_url: str, tmp_path: Path) -> None:
    app = Tether(store_url)
    await app.open()
    log = str(tmp_path / "effects.jsonl")
    workers = [WorkerProcess(store_url, f"w{i}", tmp_path, "--concurrency", "1") for i in range(2)]
    try:
        for w in workers:
            await wait_until(
                lambda w=w: f"worker {w.worker_id} on queues" in w.output,
                30,
                f"{w.worker_id} to start",
                alive=workers,
            )
        await app.submit_batch(
            [
                crashy.new_task("one_per_customer", {"log": log, "customer": c, "delay": 0.1})
                for _ in range(PER_CUSTOMER)
                for c in CUSTOMERS
            ]
        )

        async def all_ended() -> bool:
            tasks = await app.list_tasks(TaskFilter(limit=100))
            return all(t.status.terminal for t in tasks)

        await wait_until(all_ended, 60, "every task to end", alive=workers)
    finally:
        for w in workers:
            w.proc.terminate()
        for w in workers:
            await w.wait_exit(15)
            w.close()
    try:
        tasks = await app.list_tasks(TaskFilter(limit=100))
        assert len(tasks) == len(CUSTOMERS) * PER_CUSTOMER
        assert all(t.status == TaskStatus.SUCCEEDED for t in tasks)
        customer = {t.id: t.input["customer"] for t in tasks}
        assert {t.concurrency_key for t in tasks} == {f"default/{c}" for c in CUSTOMERS}
    finally:
        await app.close()

    spans: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    started: dict[str, dict[str, object]] = {}
    for e in read_log(log):
        if e["event"] == "start":
            started[str(e["task"])] = e
        else:
            s = started[str(e["task"])]
            spans[customer[str(e["task"])]].append((float(s["t"]), float(e["t"]), str(e["worker"])))
    assert {c: len(v) for c, v in spans.items()} == dict.fromkeys(CUSTOMERS, PER_CUSTOMER)
    for name, runs in spans.items():
        runs.sort()
        for (_, end, _), (start, _, _) in itertools.pairwise(runs):
            assert start >= end, f"two {name} tasks held the key at once: {runs}"
    workers_used = {w for runs in spans.values() for _, _, w in runs}
    assert workers_used == {"w0", "w1"}, "both processes took keyed work"
    every = [run for runs in spans.values() for run in runs]
    assert any(
        a0 < b1 and b0 < a1 and wa != wb
        for (a0, a1, wa), (b0, b1, wb) in itertools.combinations(every, 2)
    ), "two keys never ran side by side"
