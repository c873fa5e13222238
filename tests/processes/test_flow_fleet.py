"""Step limits and circuit breakers across two `tether worker` processes, on both
backends (ADR 91). The steps record their start and end in a side file (fsynced, with
the system-wide monotonic clock), which proves what ran when:

- a step limit of 2 never has three holders at once (nor does the fleet serialize to
  one), and the steps run on both workers;
- a holder whose worker is SIGKILLed keeps its slot only until its task's lease expires;
- a breaker opens after three failures, holds the steps that need it (no call for the
  cool-down, once every worker has read it open: within `REFRESH`), lets exactly one
  probe through, and closes: the held steps run after it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from apps.crashy import read_log
from apps.gated import app as gated
from apps.procs import WorkerProcess, wait_until
from tether import TaskFilter, TaskStatus, Tether, WaitReason
from tether.flow.breakers import REFRESH
from tether.models.breakers import FLEET, BreakerState

pytestmark = pytest.mark.slow

FAST = {"TETHER_POLL_INTERVAL": "0.1"}


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[Tether]:
    app = Tether(store_url)
    await app.open()  # the schema, before the workers open it at once
    yield app
    await app.close()


async def started(workers: list[WorkerProcess]) -> None:
    for w in workers:
        await wait_until(
            lambda w=w: f"worker {w.worker_id} on queues" in w.output,
            60,
            f"{w.worker_id} to start",
            alive=workers,
        )


def spans(log: str) -> list[dict[str, Any]]:
    """Each recorded call: key, worker, start and end (monotonic and wall), in start
    order; a call whose end is missing (its worker was killed) ends at infinity."""
    opened: dict[tuple[str, int, int], dict[str, Any]] = {}
    out = []
    for e in read_log(log):
        key = (str(e["task"]), int(e["seq"]), int(e["pid"]))
        if e["event"] == "start":
            opened[key] = {
                "task": key[0],
                "worker": e["worker"],
                "t0": float(e["t"]),
                "wall0": float(e["wall"]),
                "t1": float("inf"),
            }
            out.append(opened[key])
        else:
            opened[key]["t1"] = float(e["t"])
            opened[key]["wall1"] = float(e["wall"])
    return sorted(out, key=lambda s: s["t0"])


def most_at_once(calls: list[dict[str, Any]]) -> int:
    """The most calls running at one instant (an end at t before a start at t)."""
    edges = sorted([(c["t0"], 1) for c in calls] + [(c["t1"], -1) for c in calls])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


async def all_ended(app: Tether, n: int) -> bool:
    tasks = await app.list_tasks(TaskFilter(limit=n + 1))
    return len(tasks) == n and all(t.status.terminal for t in tasks)


async def test_a_step_limit_never_has_more_holders_than_it_allows(
    app: Tether, store_url: str, tmp_path: Path
) -> None:
    log = str(tmp_path / "calls.jsonl")
    # Each worker serves a queue of its own, so both hold slots: the limit is held across
    # processes, not by one worker that happened to claim everything.
    workers = [
        WorkerProcess(
            store_url,
            f"w{i}",
            tmp_path,
            "--concurrency",
            "3",
            "--queues",
            queue,
            app="apps.gated:app",
            env=FAST,
        )
        for i, queue in enumerate(("a", "b"))
    ]
    try:
        await started(workers)
        n = 16
        await app.submit_batch(
            [
                gated.new_task("limited", {"log": log, "hold": 0.15}, queue="ab"[i % 2])
                for i in range(n)
            ]
        )
        await wait_until(lambda: all_ended(app, n), 90, "every task to end", alive=workers)
    finally:
        for w in workers:
            w.close()
    tasks = await app.list_tasks(TaskFilter(limit=n + 1))
    assert all(t.status == TaskStatus.SUCCEEDED for t in tasks)
    calls = spans(log)
    assert len(calls) == n, "every step ran once"
    assert most_at_once(calls) == 2, "two holders at most, and the limit's two were used"
    assert {c["worker"] for c in calls} == {"w0", "w1"}
    waited = [
        e
        for t in tasks
        for e in await app.store.list_events(task_id=t.id)
        if e.type == "task.waiting" and e.decision == str(WaitReason.CONCURRENCY)
    ]
    assert waited, "steps waited for a slot (else the test proves nothing)"


async def test_a_killed_holder_keeps_its_slot_only_until_its_lease_expires(
    app: Tether, store_url: str, tmp_path: Path
) -> None:
    log = str(tmp_path / "calls.jsonl")
    lease = 3.0
    env = {**FAST, "TETHER_LEASE_TTL": str(lease)}
    doomed = WorkerProcess(store_url, "w0", tmp_path, app="apps.gated:app", env=env)
    survivor: WorkerProcess | None = None
    try:
        await started([doomed])
        (held,) = await app.submit_batch(
            [gated.new_task("solo", {"log": log, "hold": 0.05, "stall_on": "w0"})]
        )
        await wait_until(lambda: len(spans(log)) == 1, 30, "w0 to hold the slot", alive=[doomed])
        (after,) = await app.submit_batch([gated.new_task("solo", {"log": log, "hold": 0.05})])

        async def waits() -> bool:
            task = await app.get(after.id)
            return task.status == TaskStatus.WAITING and task.wait_reason == WaitReason.CONCURRENCY

        await wait_until(waits, 30, "the second step to wait for the slot", alive=[doomed])
        usage = {u.integration: u for u in await app.store.step_limit_usage(time.time())}
        assert (usage["solo"].running, usage["solo"].waiting) == (1, 1)

        doomed.kill()
        killed = time.time()

        async def freed() -> bool:
            found = {u.integration: u for u in await app.store.step_limit_usage(time.time())}
            return found["solo"].running == 0

        await wait_until(freed, lease + 10, "the dead holder's slot to be freed")
        assert time.time() - killed <= lease + 10
        # a new worker recovers the dead holder's task and runs the waiter too
        survivor = WorkerProcess(store_url, "w1", tmp_path, app="apps.gated:app", env=env)
        assert await held.result(timeout=60) == "done"
        assert await after.result(timeout=60) == "done"
    finally:
        doomed.close()
        if survivor is not None:
            survivor.close()
    calls = spans(log)
    finished = [c for c in calls if c["t1"] != float("inf")]
    assert len(calls) == 3 and len(finished) == 2, "the killed call, then two on w1"
    assert {c["worker"] for c in finished} == {"w1"}
    assert most_at_once(finished) == 1


async def test_a_breaker_opens_holds_probes_once_and_closes_across_two_workers(
    app: Tether, store_url: str, tmp_path: Path
) -> None:
    log = str(tmp_path / "calls.jsonl")
    up = tmp_path / "up"
    workers = [
        WorkerProcess(
            store_url, f"w{i}", tmp_path, "--concurrency", "4", app="apps.gated:app", env=FAST
        )
        for i in range(2)
    ]

    def flaky(hold: float) -> Any:
        return gated.new_task("flaky", {"log": log, "up": str(up), "hold": hold})

    try:
        await started(workers)
        failing = [h.id for h in await app.submit_batch([flaky(0.01) for _ in range(3)])]
        await wait_until(lambda: all_ended(app, 3), 60, "three failures", alive=workers)
        (breaker,) = [b for b in await app.store.list_breakers() if b.tenant == FLEET]
        assert breaker.state == BreakerState.OPEN and breaker.opens == 1
        assert breaker.opened_at is not None and breaker.open_until is not None
        for task_id in failing:
            assert (await app.get(task_id)).status == TaskStatus.FAILED

        # Every process sees the opening within REFRESH (each reads the breakers again
        # that often): the held steps are submitted once that has passed. The
        # integration is back at once, so whenever the cool-down ends the probe
        # succeeds; the held steps are slow, so the others come while it is in flight.
        up.touch()
        await wait_until(
            lambda: time.time() > (breaker.opened_at or 0) + REFRESH + 0.1,
            10,
            "every worker to have read the breaker again",
        )
        held = [h.id for h in await app.submit_batch([flaky(1.0) for _ in range(4)])]
        await wait_until(lambda: all_ended(app, 7), 60, "the held steps to run", alive=workers)
    finally:
        for w in workers:
            w.close()
    for task_id in held:
        assert (await app.get(task_id)).status == TaskStatus.SUCCEEDED
    (closed,) = [b for b in await app.store.list_breakers() if b.tenant == FLEET]
    assert closed.state == BreakerState.CLOSED and closed.opens == 1

    waited = [
        t
        for t in held
        if any(
            e.type == "task.waiting" and e.decision == str(WaitReason.CIRCUIT_OPEN)
            for e in await app.store.list_events(task_id=t)
        )
    ]
    assert len(waited) >= 3, "the steps that were not the probe waited on the breaker"
    calls = spans(log)
    assert len(calls) == 7, "three failures, one probe, three held steps: nothing else"
    failures, (probe, *rest) = calls[:3], calls[3:]
    assert all(c["task"] in failing for c in failures)
    # nothing called the integration while it was open
    assert probe["wall0"] >= breaker.open_until - 0.05
    # the probe went alone; the others only after it succeeded
    assert all(c["t0"] >= probe["t1"] for c in rest), "a second call went during the probe"
    assert {c["task"] for c in [probe, *rest]} == set(held)
