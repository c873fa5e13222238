"""Crash test: SIGKILL a worker process in the middle of a 10-step workflow; a new
worker finishes the task, and no step that had finished runs again."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from apps.crashy import app as crashy
from apps.crashy import read_log
from apps.procs import WorkerProcess, wait_until
from helpers import event_where
from tether import TaskPhase, TaskStatus, Tether
from tether.models import StepStatus

pytestmark = pytest.mark.slow


async def test_sigkill_mid_workflow_then_new_worker_finishes_without_redoing_steps(
    db: tuple[Tether, str], tmp_path: Path
) -> None:
    app, url = db
    log = str(tmp_path / "effects.jsonl")
    (handle,) = await app.submit_batch([crashy.new_task("ten_steps", {"log": log, "delay": 0.3})])
    workers: list[WorkerProcess] = []
    try:
        w1 = WorkerProcess(url, "w1", tmp_path, "--lease-ttl", "1")
        workers.append(w1)

        def fifth_step_started() -> bool:
            return any(e["event"] == "start" and e["seq"] == 5 for e in read_log(log))

        await wait_until(fifth_step_started, 30, "step 5 to start on w1", alive=[w1])
        w1.kill()

        # What the database holds right after the kill: steps 1-4 committed for sure
        # (step 5 only starts after step 4 is committed), the task still leased to w1.
        committed = {
            s.seq for s in await app.store.get_steps(handle.id) if s.status == StepStatus.SUCCEEDED
        }
        assert {1, 2, 3, 4} <= committed
        assert (await app.get(handle.id)).status == TaskStatus.RUNNING

        w2 = WorkerProcess(url, "w2", tmp_path, "--lease-ttl", "1")
        workers.append(w2)

        async def ended() -> bool:
            return (await app.get(handle.id)).status.terminal

        await wait_until(ended, 30, "the task to end on w2", alive=[w2])
        task = await app.get(handle.id)
        assert task.status == TaskStatus.SUCCEEDED, task.error
        assert task.result == list(range(1, 11))

        w2.proc.terminate()
        assert await w2.wait_exit(15) == 0, w2.output
    finally:
        for w in workers:
            w.close()

    entries = read_log(log)
    starts: dict[int, list[dict[str, object]]] = defaultdict(list)
    ends: dict[int, list[dict[str, object]]] = defaultdict(list)
    for e in entries:
        (starts if e["event"] == "start" else ends)[int(e["seq"])].append(e)

    # Finished (committed) steps were never executed again.
    for seq in committed:
        assert len(starts[seq]) == 1, f"step {seq} finished before the kill but ran again"
        assert starts[seq][0]["worker"] == "w1"
    # Every step ran to completion at least once; at most the in-flight one ran twice.
    assert set(ends) == set(range(1, 11))
    twice = {seq for seq, s in starts.items() if len(s) > 1}
    assert twice <= {max(committed) + 1}, f"steps run more than once: {sorted(twice)}"
    assert sum(len(s) for s in starts.values()) <= 11
    # The new worker took over through lease expiry and ran the rest.
    assert all(s[-1]["worker"] == "w2" for seq, s in starts.items() if seq not in committed)
    events = await app.store.list_events(task_id=handle.id)
    takeover = [e for e in events if e.type == "task.started" and e.worker == "w2"]
    assert [e.decision for e in takeover] == ["lease_expired"]

    # Idempotency keys: one per step, the same on every execution of that step, and
    # each key appears once per step among the completed effects.
    keys_by_seq = {seq: {e["key"] for e in s} for seq, s in starts.items()}
    assert all(len(k) == 1 for k in keys_by_seq.values()), keys_by_seq
    completed = defaultdict(set)
    for seq, es in ends.items():
        for e in es:
            completed[e["key"]].add(seq)
    assert len(completed) == 10
    assert all(len(seqs) == 1 for seqs in completed.values())


MAX_LEASE_EXPIRIES = 2


async def test_a_task_that_kills_its_worker_every_time_fails_once_the_cap_is_reached(
    store_url: str, tmp_path: Path
) -> None:
    """Its step SIGKILLs the worker process each time: the workers that recover it die
    in turn, until the claim after the last allowed lease expiry fails the task as
    `WorkerLost` instead of running the step again (ADR 64)."""
    app = Tether(store_url)
    await app.open()
    log = str(tmp_path / "effects.jsonl")
    workers: list[WorkerProcess] = []
    try:
        (handle,) = await app.submit_batch([crashy.new_task("kills_its_worker", {"log": log})])
        env = {"TETHER_MAX_LEASE_EXPIRIES": str(MAX_LEASE_EXPIRIES)}
        for i in range(MAX_LEASE_EXPIRIES + 1):
            w = WorkerProcess(store_url, f"w{i}", tmp_path, "--lease-ttl", "1", env=env)
            workers.append(w)

            async def died_or_ended(w: WorkerProcess = w) -> bool:
                return w.proc.poll() is not None or (await app.get(handle.id)).status.terminal

            await wait_until(died_or_ended, 30, f"w{i} to die or the task to end")
            if i < MAX_LEASE_EXPIRIES:
                assert w.proc.wait(10) == -9, f"w{i} was to be killed by its step:\n{w.output}"
        task = await app.get(handle.id)
        assert task.status == TaskStatus.FAILED, task
        assert task.error is not None and task.error.type == "WorkerLost"
        last = workers[-1]
        assert last.proc.poll() is None, "the worker that failed the task was not killed"
        last.proc.terminate()
        assert await last.wait_exit(15) == 0, last.output
        assert "worker was lost" in last.output, last.output
        await event_where(app, handle.id, lambda e: e.type == "task.failed")  # ADR 13
        events = await app.store.list_events(task_id=handle.id)
    finally:
        for w in workers:
            w.close()
        await app.close()

    starts = [e for e in read_log(log) if e["event"] == "start"]
    assert [e["worker"] for e in starts] == [f"w{i}" for i in range(MAX_LEASE_EXPIRIES)]
    assert [(e.type, e.decision, e.worker) for e in events if e.type != "task.created"] == [
        ("task.started", "claimed", "w0"),
        ("task.started", "lease_expired", "w1"),
        ("task.failed", "worker_lost", f"w{MAX_LEASE_EXPIRIES}"),
    ]
    assert events[-1].data is not None and events[-1].data["lost_worker"] == "w1"


async def test_sigkill_mid_compensation_undoes_each_step_once_in_reverse(
    db: tuple[Tether, str], tmp_path: Path
) -> None:
    """A saga whose fourth step fails undoes the first three latest first; its worker
    SIGKILLed while undoing the second, a new worker finishes the compensation without
    undoing the third again (ADR 83)."""
    app, url = db
    log = str(tmp_path / "effects.jsonl")
    (handle,) = await app.submit_batch([crashy.new_task("saga", {"log": log})])
    workers: list[WorkerProcess] = []
    try:
        w1 = WorkerProcess(url, "w1", tmp_path, "--lease-ttl", "1")
        workers.append(w1)

        def undoing_second() -> bool:
            return any(e.get("undoes") == 2 for e in read_log(log))

        await wait_until(undoing_second, 30, "w1 to undo booking 2", alive=[w1])
        w1.kill()
        task = await app.get(handle.id)
        assert task.status == TaskStatus.RUNNING and task.phase == TaskPhase.COMPENSATION

        w2 = WorkerProcess(url, "w2", tmp_path, "--lease-ttl", "1")
        workers.append(w2)

        async def ended() -> bool:
            return (await app.get(handle.id)).status.terminal

        await wait_until(ended, 30, "the task to end on w2", alive=[w2])
        w2.proc.terminate()
        assert await w2.wait_exit(15) == 0, w2.output
    finally:
        for w in workers:
            w.close()

    task = await app.get(handle.id)
    assert task.status == TaskStatus.FAILED and task.error is not None
    assert (task.error.type, task.error.step) == ("ValueError", "book-4")
    assert task.error.compensated == ["book-3", "book-2", "book-1"]
    undos = [e for e in read_log(log) if "undoes" in e]
    ends = [e["undoes"] for e in undos if e["event"] == "end"]
    assert ends == [3, 2, 1], "each booking undone once, latest first"
    starts = [(e["undoes"], e["worker"]) for e in undos if e["event"] == "start"]
    assert starts == [(3, "w1"), (2, "w1"), (2, "w2"), (1, "w2")]
    keys = {e["undoes"]: {u["key"] for u in undos if u["undoes"] == e["undoes"]} for e in undos}
    assert all(len(k) == 1 for k in keys.values()), "a re-run undo presents the same key"
    bookings = [e["seq"] for e in read_log(log) if "undoes" not in e and e["event"] == "start"]
    assert bookings == [1, 2, 3, 4], "no booking ran again"
