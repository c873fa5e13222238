"""A budget across worker processes (ADR 92): 20 tasks share one daily budget of $1.00
on two real `tether worker` processes, each task wanting three steps of $0.05 ($3.00 in
all), twenty steps in flight at once. Counted at the side effect (what the steps really
spent, from their own log), the budget is never exceeded: exactly twenty steps run, the
ledger agrees to the nano-dollar, and the tasks that found it spent failed
`BudgetExceeded` without running the step. On SQLite (one file) and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.budgeted import DAILY, PRICE
from apps.budgeted import app as budgeted
from apps.crashy import read_log
from apps.procs import WorkerProcess, wait_until
from tether import Cost, TaskFilter, TaskStatus, Tether

pytestmark = pytest.mark.slow

TASKS = 20


async def test_twenty_concurrent_tasks_on_one_budget_never_exceed_it(
    store_url: str, tmp_path: Path
) -> None:
    app = Tether(store_url)
    await app.open()
    log = str(tmp_path / "spent.jsonl")
    workers = [
        WorkerProcess(store_url, f"w{i}", tmp_path, "--concurrency", "10", app="apps.budgeted:app")
        for i in (1, 2)
    ]
    try:
        for w in workers:
            await wait_until(
                lambda w=w: f"worker {w.worker_id} on queues" in w.output,
                30,
                f"{w.worker_id} to start",
                alive=workers,
            )
        await app.submit_batch(
            [budgeted.new_task("spend", {"log": log, "steps": 3}) for _ in range(TASKS)]
        )

        async def all_ended() -> bool:
            tasks = await app.list_tasks(TaskFilter(limit=TASKS + 1))
            return len(tasks) == TASKS and all(t.status.terminal for t in tasks)

        await wait_until(all_ended, 90, "every task to end", alive=workers)
        for w in workers:
            w.proc.terminate()
        for w in workers:
            assert await w.wait_exit(20) == 0, w.output
    finally:
        for w in workers:
            w.close()

    effects = read_log(log)
    spent = [e for e in effects if e["event"] == "spent"]
    assert DAILY.usd is not None
    allowed = round(DAILY.usd / PRICE.usd)
    # Never exceeded, counted where the money goes; and all of it was usable.
    assert len(spent) == allowed, f"{len(spent)} steps spent, {allowed} fit the budget"
    assert {e["worker"] for e in spent} == {"w1", "w2"}, "both workers spent from it"
    # The steps really overlapped, across the processes.
    starts = {(e["task"], e["seq"]): e for e in effects if e["event"] == "start"}
    spans = sorted((starts[(e["task"], e["seq"])]["t"], e["t"]) for e in spent)
    most = max(sum(1 for s, f in spans if s <= at < f) for at, _ in spans)
    assert most >= 10, f"at most {most} steps ran at once"

    day = (await app.spend()).workflows["spend"]
    assert day.spent == Cost(usd=DAILY.usd)  # the ledger agrees, exactly
    assert day.reserved == Cost()
    assert day.limit_usd == DAILY.usd
    tasks = await app.list_tasks(TaskFilter(limit=TASKS + 1))
    failed = [t for t in tasks if t.status == TaskStatus.FAILED]
    assert failed and all(t.error is not None and t.error.type == "BudgetExceeded" for t in failed)
    assert sum(t.steps_done for t in tasks) == allowed
    await app.close()
