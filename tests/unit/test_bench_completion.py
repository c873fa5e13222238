"""A benchmark's tasks are done when the store counts them done (bench/completion.py),
and W1 stops its clock there, not when its in-memory counter fires."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bench import workloads
from bench.common import Sizes
from bench.completion import until_status

from tether import Tether
from tether.models import TaskStatus

Counts = dict[tuple[str, str], int]


class Scripted:
    """A store whose `count_by_status` answers a script, one answer per call (the last
    one repeated)."""

    def __init__(self, *answers: Counts) -> None:
        self.answers: Iterator[Counts] = iter(answers)
        self.last: Counts = {}
        self.calls = 0

    async def count_by_status(self, tenant: str | None = None) -> Counts:
        self.calls += 1
        self.last = next(self.answers, self.last)
        return self.last


async def test_it_returns_only_once_every_task_is_in_the_status() -> None:
    store = Scripted(
        {("default", "running"): 3, ("default", "succeeded"): 7},
        {("default", "running"): 1, ("default", "succeeded"): 9},
        {("default", "succeeded"): 10},
    )
    await until_status(store, TaskStatus.SUCCEEDED, 10, interval=0)
    assert store.calls == 3


async def test_queues_are_counted_together() -> None:
    store = Scripted({("default", "succeeded"): 4, ("other", "succeeded"): 6})
    await until_status(store, TaskStatus.SUCCEEDED, 10, interval=0)
    assert store.calls == 1


@pytest.mark.parametrize("ended", ["failed", "cancelled"])
async def test_a_task_that_ended_otherwise_fails_at_once(ended: str) -> None:
    store = Scripted({("default", "succeeded"): 9, ("default", ended): 1})
    with pytest.raises(RuntimeError, match=ended):
        await until_status(store, TaskStatus.SUCCEEDED, 10, interval=0, timeout=60)
    assert store.calls == 1


async def test_parked_tasks_that_ended_fail_the_wait_for_waiting() -> None:
    store = Scripted({("default", "waiting"): 9, ("default", "succeeded"): 1})
    with pytest.raises(RuntimeError, match="succeeded 1"):
        await until_status(store, TaskStatus.WAITING, 10, interval=0, timeout=60)


async def test_more_tasks_than_submitted_fail() -> None:
    store = Scripted({("default", "succeeded"): 11})
    with pytest.raises(RuntimeError, match="expected 10"):
        await until_status(store, TaskStatus.SUCCEEDED, 10, interval=0)


async def test_it_gives_up_at_its_deadline() -> None:
    store = Scripted({("default", "running"): 10})
    with pytest.raises(TimeoutError, match="0 of 10"):
        await until_status(store, TaskStatus.SUCCEEDED, 10, interval=0.01, timeout=0.05)
    assert store.calls >= 2


async def test_w1_ends_with_every_task_succeeded_in_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/w1.db"
    metrics = await workloads.w1(url, Sizes(w1=200, concurrency=20))
    assert set(metrics) == {"w1_enqueue_s", "w1_drain_s", "w1_tasks_per_s", "w1_settle_ms"}
    # The settle time is inside the drain: the clock ran until the store counted 200.
    assert 0 <= metrics["w1_settle_ms"] / 1000 <= metrics["w1_drain_s"]
    app = Tether(database_url=url)
    await app.open()
    try:
        assert await app.store.count_by_status() == {("default", "succeeded"): 200}
    finally:
        await app.close()
