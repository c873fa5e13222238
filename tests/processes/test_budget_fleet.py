"""A budget across worker processes (ADR 92): 20 tasks share one daily budget of $1.00
on two real `tether worker` processes, each task wanting three steps of $0.05 ($3.00 in
all), twenty steps in flight at once. Counted at the side effect (what the steps really
spent, from their own log), the budget is never exceeded: exactly twenty steps run, the
ledger agrees to the nano-dollar, and the tasks that found it spent failed
`BudgetExceeded` without running the step. With the `approve` policy instead, every
task still running waits (`budget`) behind one approval, and its decision, made in
this process, wakes them all in the workers to spend the raise and no more. On SQLite
(one file) and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.budgeted import ASKING, DAILY, PRICE
from apps.budgeted import app as budgeted
from apps.crashy import read_log
from apps.procs import WorkerProcess, wait_until
from tether import Cost, TaskFilter, TaskStatus, Tether, WaitReason
from tether.models import ApprovalFilter

pytestmark = pytest.mark.slow

TASKS = 20


def workers_for(url: str, tmp_path: Path) -> list[WorkerProcess]:
    return [
        WorkerProcess(url, f"w{i}", tmp_path, "--concurrency", "10", app="apps.budgeted:app")
        for i in (1, 2)
    ]


async def started(workers: list[WorkerProcess]) -> None:
    for w in workers:
        await wait_until(
            lambda w=w: f"worker {w.worker_id} on queues" in w.output,
            30,
            f"{w.worker_id} to start",
            alive=workers,
        )


async def all_ended(app: Tether) -> bool:
    tasks = await app.list_tasks(TaskFilter(limit=TASKS + 1))
    return len(tasks) == TASKS and all(t.status.terminal for t in tasks)


async def stop(workers: list[WorkerProcess]) -> None:
    for w in workers:
        w.proc.terminate()
    for w in workers:
        assert await w.wait_exit(20) == 0, w.output


def spent_steps(log: str) -> list[dict[str, object]]:
    """The steps that spent, each checked against its start: the steps overlapped (ten
    at least at once), on both workers."""
    effects = read_log(log)
    spent = [e for e in effects if e["event"] == "spent"]
    assert {e["worker"] for e in spent} == {"w1", "w2"}, "both workers spent from it"
    starts = {(e["task"], e["seq"]): e for e in effects if e["event"] == "start"}
    spans = sorted((float(starts[(e["task"], e["seq"])]["t"]), float(e["t"])) for e in spent)
    most = max(sum(1 for s, f in spans if s <= at < f) for at, _ in spans)
    assert most >= 10, f"at most {most} steps ran at once"
    return spent


async def test_twenty_concurrent_tasks_on_one_budget_never_exceed_it(
    store_url: str, tmp_path: Path
) -> None:
    app = Tether(store_url)
    await app.open()
    log = str(tmp_path / "spent.jsonl")
    workers = workers_for(store_url, tmp_path)
    try:
        await started(workers)
        await app.submit_batch(
            [budgeted.new_task("spend", {"log": log, "steps": 3}) for _ in range(TASKS)]
        )
        await wait_until(lambda: all_ended(app), 90, "every task to end", alive=workers)
        await stop(workers)
    finally:
        for w in workers:
            w.close()

    assert DAILY.usd is not None
    allowed = round(DAILY.usd / PRICE.usd)
    # Never exceeded, counted where the money goes; and all of it was usable.
    spent = spent_steps(log)
    assert len(spent) == allowed, f"{len(spent)} steps spent, {allowed} fit the budget"

    day = (await app.spend()).workflows["spend"]
    assert day.spent == Cost(usd=DAILY.usd)  # the ledger agrees, exactly
    assert day.reserved == Cost()
    assert day.limit_usd == DAILY.usd
    tasks = await app.list_tasks(TaskFilter(limit=TASKS + 1))
    failed = [t for t in tasks if t.status == TaskStatus.FAILED]
    assert failed and all(t.error is not None and t.error.type == "BudgetExceeded" for t in failed)
    assert sum(t.steps_done for t in tasks) == allowed
    await app.close()


async def test_a_raise_wakes_every_waiting_task_in_every_worker(
    store_url: str, tmp_path: Path
) -> None:
    app = Tether(store_url)
    await app.open()
    log = str(tmp_path / "spent.jsonl")
    workers = workers_for(store_url, tmp_path)

    async def held(spent: int) -> bool:
        """`spent` steps spent, and every task done or waiting for the budget."""
        tasks = await app.list_tasks(TaskFilter(limit=TASKS + 1))
        return len(read_log_spent(log)) == spent and all(
            t.status == TaskStatus.SUCCEEDED
            or (t.status == TaskStatus.WAITING and t.wait_reason == WaitReason.BUDGET)
            for t in tasks
        )

    try:
        await started(workers)
        await app.submit_batch(
            [budgeted.new_task("spend_asking", {"log": log}) for _ in range(TASKS)]
        )
        for spent, raise_to in ((20, 2.5), (50, 3.0)):  # $1.00, then $2.50, then $3.00
            await wait_until(lambda n=spent: held(n), 60, f"{spent} steps, then a wait")
            pending = await app.approvals(ApprovalFilter(status="pending"))
            assert len(pending) == 1, "one approval for the budget they all wait on"
            assert pending[0].request["budget"]["scope"] == "workflow"
            await app.decide(pending[0].id, reviewer="ops", approve=True, changes={"usd": raise_to})
        await wait_until(lambda: all_ended(app), 90, "every task to end", alive=workers)
        await stop(workers)
    finally:
        for w in workers:
            w.close()

    assert len(spent_steps(log)) == 60  # every step, and no step past a limit
    tasks = await app.list_tasks(TaskFilter(limit=TASKS + 1))
    assert all(t.status == TaskStatus.SUCCEEDED for t in tasks)
    day = (await app.spend()).workflows["spend_asking"]
    assert day.spent == Cost(usd=3.0) and day.reserved == Cost()
    assert ASKING.usd is not None and day.limit_usd == 3.0
    await app.close()


def read_log_spent(log: str) -> list[dict[str, object]]:
    return [e for e in read_log(log) if e["event"] == "spent"]
