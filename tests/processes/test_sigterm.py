"""SIGTERM hand-back: a worker stopped in the middle of a long step hands the task
back at once (no lease expiry needed), exits 0, and another worker completes it without
re-running finished steps."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from apps.crashy import app as crashy
from apps.crashy import read_log
from apps.procs import WorkerProcess, wait_until
from tether import TaskStatus, Tether

pytestmark = pytest.mark.slow


async def test_sigterm_hands_the_task_back_and_exits_zero(
    db: tuple[Tether, str], tmp_path: Path
) -> None:
    app, url = db
    log = str(tmp_path / "effects.jsonl")
    (handle,) = await app.submit_batch(
        [crashy.new_task("slow_middle", {"log": log, "first_run_seconds": 60})]
    )
    workers: list[WorkerProcess] = []
    try:
        # A long lease: if the hand-back did not happen, w2 could not take over in time.
        w1 = WorkerProcess(url, "w1", tmp_path, "--grace", "0.5", "--lease-ttl", "60")
        workers.append(w1)
        await wait_until(
            lambda: any(e["step"] == "b" and e["event"] == "start" for e in read_log(log)),
            30,
            "the long step to start on w1",
            alive=[w1],
        )
        w1.proc.terminate()
        assert await w1.wait_exit(15) == 0, w1.output
        assert "SIGTERM" in w1.output

        task = await app.get(handle.id)
        assert task.status == TaskStatus.QUEUED
        events = await app.store.list_events(task_id=handle.id)
        released = [e for e in events if e.type == "task.released"]
        assert len(released) == 1
        assert released[0].worker == "w1"
        assert released[0].decision == "worker_shutdown"

        w2 = WorkerProcess(url, "w2", tmp_path, "--lease-ttl", "60")
        workers.append(w2)

        async def ended() -> bool:
            return (await app.get(handle.id)).status.terminal

        await wait_until(ended, 30, "the task to end on w2", alive=[w2])
        task = await app.get(handle.id)
        assert task.status == TaskStatus.SUCCEEDED, task.error
        assert task.result == "ok"
        w2.proc.terminate()
        assert await w2.wait_exit(15) == 0, w2.output
    finally:
        for w in workers:
            w.close()

    runs = [(e["step"], e["event"], e["worker"]) for e in read_log(log)]
    assert runs == [
        ("a", "start", "w1"),
        ("a", "end", "w1"),
        ("b", "start", "w1"),  # interrupted by the hand-back: no "end" from w1
        ("b", "start", "w2"),
        ("b", "end", "w2"),
        ("c", "start", "w2"),
        ("c", "end", "w2"),
    ]
    events = await app.store.list_events(task_id=handle.id)
    started = [(e.worker, e.decision) for e in events if e.type == "task.started"]
    assert started == [("w1", "claimed"), ("w2", "claimed")]


async def test_sigterm_does_not_wait_for_a_sync_step_thread(
    db: tuple[Tether, str], tmp_path: Path
) -> None:
    """A sync step blocks its thread for 30 s; the worker still hands the task back and
    exits promptly (the thread is abandoned, the step re-runs elsewhere)."""
    app, url = db
    log = str(tmp_path / "effects.jsonl")
    (handle,) = await app.submit_batch([crashy.new_task("sync_slow", {"log": log, "seconds": 30})])
    w1 = WorkerProcess(url, "w1", tmp_path, "--grace", "0.2")
    try:
        await wait_until(lambda: len(read_log(log)) == 1, 30, "the sync step to start", alive=[w1])
        started = time.monotonic()
        w1.proc.terminate()
        assert await w1.wait_exit(10) == 0, w1.output
        assert time.monotonic() - started < 10
    finally:
        w1.close()
    task = await app.get(handle.id)
    assert task.status == TaskStatus.QUEUED
    events = await app.store.list_events(task_id=handle.id)
    assert [e.type for e in events][-1] == "task.released"
