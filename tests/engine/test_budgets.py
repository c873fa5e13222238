"""Budgets in money and tokens (ADR 92), on both backends with a real worker: steps
charge (`ctx.charge`) and reserve what they declare (`estimate=`); spend shows per task
and per tenant-day; an exhausted budget makes the task wait (reason `budget`) with an
approval to raise it, whose decision lets the task go on or fails it `budget_exceeded`;
the `fail` policy fails at once; `RetryBudget(max_usd=)` stops retries."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest

from fake_models import CHAT, ModelServer
from helpers import event_where, wait_status
from tether import (
    Budget,
    BudgetExceeded,
    Context,
    Cost,
    NotStorable,
    RetryBudget,
    RetryPolicy,
    StepFailed,
    TaskStatus,
    Tether,
    Transient,
    WaitReason,
)
from tether.agents import ModelUsage
from tether.agents import openai as llm
from tether.models import ApprovalFilter
from tether.models.budgets import utc_day

STEP = Cost(usd=0.04, tokens=100)


def charging_app(make_app: Callable[[], Tether], runs: list[str], steps: int = 5) -> Tether:
    """`spender`: `steps` steps, each declaring and then charging $0.04 and 100 tokens."""
    app = make_app()

    @app.workflow("spender")
    async def spender(ctx: Context) -> int:
        for i in range(steps):

            def work(i: int = i) -> int:
                runs.append(f"{ctx.task_id}:{i}")
                ctx.charge(usd=STEP.usd, tokens=STEP.tokens)
                return i

            await ctx.step(f"work{i}", work, estimate=STEP)
        return steps

    return app


async def waiting_for_budget(app: Tether, task_id: str) -> None:
    await wait_status(app, task_id, TaskStatus.WAITING)
    assert (await app.get(task_id)).wait_reason == WaitReason.BUDGET


async def test_steps_charge_and_spend_shows_per_task_and_per_tenant_day(
    make_app: Callable[[], Tether],
) -> None:
    runs: list[str] = []
    app = charging_app(make_app, runs, steps=3)
    async with app.worker(concurrency=4):
        first = await app.submit("spender", tenant="acme")
        second = await app.submit("spender", tenant="acme")
        other = await app.submit("spender", tenant="zeta")
        for h in (first, second, other):
            assert await h.result(timeout=20) == 3
    line = await app.task_spend(first.id)
    assert line.spent == Cost(usd=0.12, tokens=300)
    assert line.reserved == Cost()  # every reservation settled
    day = await app.spend(tenant="acme")
    assert day.day == utc_day(app.clock.now())
    assert day.total.spent == Cost(usd=0.24, tokens=600)  # exact: the ledger counts nanos
    assert day.workflows["spender"].spent == Cost(usd=0.24, tokens=600)
    assert (await app.spend(tenant="zeta")).total.spent == Cost(usd=0.12, tokens=300)
    assert (await app.spend(tenant="nobody")).total.spent == Cost()
    steps = await app.steps(first.id)
    assert steps[0].meta["estimate"] == STEP.to_json()
    assert steps[0].meta["spend"] == STEP.to_json()


async def test_an_exhausted_budget_waits_for_an_approval_whose_raise_lets_it_go_on(
    make_app: Callable[[], Tether],
) -> None:
    runs: list[str] = []
    app = charging_app(make_app, runs)
    async with app.worker(concurrency=4):
        handle = await app.submit("spender", spend_budget=Budget(usd=0.10), created_by="bot")
        await waiting_for_budget(app, handle.id)
        assert len(runs) == 2  # $0.08 spent; the third step's $0.04 would pass $0.10
        (approval,) = await app.approvals(ApprovalFilter(task_id=handle.id))
        assert approval.status == "pending" and approval.risk == "budget"
        assert approval.seq < 0  # below the step log: never a step's position
        spec = approval.request["budget"]
        assert spec["scope"] == "task" and spec["step"] == "work2"
        assert spec["limit"] == {"usd": 0.10, "tokens": None}
        assert spec["spent"]["usd"] == pytest.approx(0.08)
        assert spec["proposed"]["usd"] == pytest.approx(0.20)
        assert (await app.task_spend(handle.id)).approval_id == approval.id
        await app.decide(approval.id, reviewer="ops", approve=True, changes={"usd": 0.25})
        assert await handle.result(timeout=20) == 5
    assert len(runs) == 5  # the two finished steps were replayed, not run again
    line = await app.task_spend(handle.id)
    assert line.spent.usd == pytest.approx(0.20)
    assert line.limit_usd == pytest.approx(0.25)
    woke = await event_where(app, handle.id, lambda e: e.type == "approval.decided")
    assert woke.new_status == "queued"


async def test_a_raise_without_changes_grants_the_proposal(make_app: Callable[[], Tether]) -> None:
    runs: list[str] = []
    app = charging_app(make_app, runs)
    async with app.worker(concurrency=4):
        handle = await app.submit("spender", spend_budget=Budget(usd=0.10, tokens=10_000))
        await waiting_for_budget(app, handle.id)
        (approval,) = await app.approvals(ApprovalFilter(task_id=handle.id))
        await app.decide(approval.id, reviewer="ops", approve=True)
        assert await handle.result(timeout=20) == 5
    line = await app.task_spend(handle.id)
    assert (line.limit_usd, line.limit_tokens) == (pytest.approx(0.20), 20_000)


async def test_a_refused_raise_fails_the_task_as_budget_exceeded(
    make_app: Callable[[], Tether],
) -> None:
    runs: list[str] = []
    app = charging_app(make_app, runs)
    async with app.worker(concurrency=4):
        handle = await app.submit("spender", spend_budget=Budget(usd=0.10))
        await waiting_for_budget(app, handle.id)
        (approval,) = await app.approvals(ApprovalFilter(task_id=handle.id))
        await app.decide(approval.id, reviewer="ops", approve=False, reason="too dear")
        await wait_status(app, handle.id, TaskStatus.FAILED)
    task = await app.get(handle.id)
    assert task.error is not None and task.error.type == "BudgetExceeded"
    assert task.error.step == "work2" and "refused" in task.error.message
    failed = await event_where(app, handle.id, lambda e: e.type == "task.failed")
    assert failed.decision == "budget_exceeded"
    (step,) = [s for s in await app.steps(handle.id) if s.name == "work2"]
    assert step.attempt_errors[-1].reason == "budget_exceeded"
    assert len(runs) == 2


async def test_the_fail_policy_fails_the_step_before_it_runs(
    make_app: Callable[[], Tether],
) -> None:
    runs: list[str] = []
    app = make_app()
    seen: list[str] = []

    @app.workflow("careful", spend_budget=Budget(usd=0.05, on_exhausted="fail"))
    async def careful(ctx: Context) -> str:
        def work() -> None:
            runs.append("ran")
            ctx.charge(usd=0.04)

        await ctx.step("first", work, estimate=Cost(usd=0.04))
        try:
            await ctx.step("second", work, estimate=Cost(usd=0.04))
        except StepFailed as exc:  # the workflow may take another way
            seen.append(exc.error_type)
            raise
        return "unreachable"

    async with app.worker(concurrency=2):
        handle = await app.submit("careful")
        await wait_status(app, handle.id, TaskStatus.FAILED)
    assert runs == ["ran"]
    assert seen == [BudgetExceeded.__name__]
    assert (await app.get(handle.id)).spend_budget == Budget(usd=0.05, on_exhausted="fail")
    assert await app.approvals(ApprovalFilter(task_id=handle.id)) == []


async def test_a_tenant_day_budget_holds_every_task_and_one_raise_wakes_them_all(
    make_app: Callable[[], Tether],
) -> None:
    runs: list[str] = []
    app = charging_app(make_app, runs, steps=2)
    app.budgets.set_daily(Budget(usd=0.10))  # every tenant, per UTC day
    async with app.worker(concurrency=8):
        handles = [await app.submit("spender", created_by="bot") for _ in range(3)]
        # $0.24 asked of $0.10: two steps run, and every task waits at some step.
        for h in handles:
            if (await app.get(h.id)).status != TaskStatus.SUCCEEDED:
                await waiting_for_budget(app, h.id)
        assert len(runs) == 2
        pending = await app.approvals(ApprovalFilter(status="pending"))
        assert len(pending) == 1, "one approval per exhausted line, not one per task"
        assert pending[0].request["budget"]["scope"] == "tenant"
        await app.decide(pending[0].id, reviewer="ops", approve=True, changes={"usd": 1.0})
        for h in handles:
            assert await h.result(timeout=20) == 2
    day = await app.spend()
    assert day.total.spent.usd == pytest.approx(0.24)
    assert day.total.limit_usd == pytest.approx(1.0)


async def test_a_retry_budget_in_money_stops_retries_once_the_task_spent_it(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    attempts: list[int] = []

    @app.workflow(
        "flaky",
        retry=RetryPolicy(max_attempts=10, initial_interval=0.01, jitter=0),
        budget=RetryBudget(max_usd=1.0),
    )
    async def flaky(ctx: Context) -> None:
        def call() -> None:
            attempts.append(1)
            ctx.charge(usd=0.4)  # paid for, then failed
            raise Transient("the provider hung up")

        await ctx.step("call", call)

    async with app.worker(concurrency=2):
        handle = await app.submit("flaky")
        await wait_status(app, handle.id, TaskStatus.FAILED)
    assert len(attempts) == 3  # 0.4, 0.8 (retried), 1.2 (not: 1.0 spent)
    (step,) = await app.steps(handle.id)
    assert [a.reason for a in step.attempt_errors] == [
        "backoff",
        "backoff",
        "spend_budget_exhausted",
    ]
    assert (await app.task_spend(handle.id)).spent.usd == pytest.approx(1.2)


async def test_bad_budgets_and_raises_are_refused(make_app: Callable[[], Tether]) -> None:
    with pytest.raises(ValueError, match="usd, tokens or both"):
        Budget()
    with pytest.raises(ValueError, match="on_exhausted"):
        Budget(usd=1, on_exhausted="ask")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        Cost(usd=float("nan"))
    with pytest.raises(ValueError, match="negative"):
        Cost(tokens=-1)
    runs: list[str] = []
    app = charging_app(make_app, runs)
    async with app.worker(concurrency=2):
        handle = await app.submit("spender", spend_budget=Budget(usd=0.10))
        await waiting_for_budget(app, handle.id)
        (approval,) = await app.approvals(ApprovalFilter(task_id=handle.id))
        with pytest.raises(NotStorable, match=r"changes\.usd"):
            await app.decide(approval.id, reviewer="ops", approve=True, changes={"usd": "lots"})
        with pytest.raises(NotStorable, match=r"changes\.limit"):
            await app.decide(approval.id, reviewer="ops", approve=True, changes={"limit": 1})
        still = (await app.approvals(ApprovalFilter(task_id=handle.id)))[0]
        assert still.status == "pending" and still.decisions == []  # nothing half-written
        await app.cancel(handle.id)


async def test_model_calls_charge_their_cost_and_tokens_by_themselves(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    server = ModelServer().__enter__()
    client = openai.AsyncOpenAI(base_url=server.openai_url, api_key="sk-test", max_retries=0)

    @app.workflow("agent", spend_budget=Budget(tokens=25, on_exhausted="fail"))
    async def agent(ctx: Context) -> int:
        await llm.chat(  # its estimate the default one, guessed from the request
            ctx, client, model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        # 18 tokens a call (the fake's 11 in, 7 out): 18 + the 10 reserved is past 25.
        await llm.chat(
            ctx,
            client,
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "again"}],
            estimate=Cost(tokens=10),
        )
        return 2

    try:
        async with client, app.worker(concurrency=2):
            handle = await app.submit("agent")
            await wait_status(app, handle.id, TaskStatus.FAILED)
        assert server.count(CHAT) == 1  # 18 + 10 > 25: the second call was never sent
    finally:
        server.__exit__()
    task = await app.get(handle.id)
    assert task.error is not None and task.error.type == "BudgetExceeded"
    steps = await app.steps(handle.id)
    usage = ModelUsage.from_meta(steps[0].meta)
    assert usage is not None and usage.cost is not None and usage.cost > 0
    guessed = Cost.from_json(steps[0].meta["estimate"])
    assert guessed.tokens > 0 and guessed.usd > 0
    assert steps[0].meta["spend"] == {"usd": usage.cost, "tokens": 18}
    line = await app.task_spend(handle.id)
    assert line.spent == Cost(usd=usage.cost, tokens=18)
    assert (await app.spend()).total.spent == line.spent


async def test_a_refused_step_replays_refused_even_once_the_budget_has_room(
    make_app: Callable[[], Tether],
) -> None:
    runs: list[str] = []
    app = make_app()
    app.budgets.set_daily(Budget(usd=0.01, on_exhausted="fail"))

    @app.workflow("degrades")
    async def degrades(ctx: Context) -> str:
        def dear() -> str:
            runs.append("dear")
            return "full answer"

        try:
            answer = await ctx.step("dear", dear, estimate=Cost(usd=0.05))
        except StepFailed as exc:
            answer = f"cheap answer ({exc.error_type})"
        await ctx.wait_for_signal("go")  # suspends: the next run replays the refusal
        return answer

    async with app.worker(concurrency=2):
        handle = await app.submit("degrades")
        await wait_status(app, handle.id, TaskStatus.WAITING)
        app.budgets.set_daily(Budget(usd=10.0))  # room now: the replay must not care
        await app.signal(handle.id, "go")
        assert await handle.result(timeout=20) == "cheap answer (BudgetExceeded)"
    assert runs == []
    (step,) = [s for s in await app.steps(handle.id) if s.name == "dear"]
    assert step.status == "failed" and step.error is not None
    assert step.error.type == "BudgetExceeded"


async def test_a_zero_estimate_reserves_nothing_but_needs_room(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    runs: list[str] = []

    @app.workflow("checked", spend_budget=Budget(usd=0.05, on_exhausted="fail"))
    async def checked(ctx: Context) -> None:
        def free(label: str) -> None:
            runs.append(label)

        def paid() -> None:
            runs.append("paid")
            ctx.charge(usd=0.05)

        await ctx.step("free", free, "free", estimate=Cost())  # room: it runs
        await ctx.step("paid", paid, estimate=Cost(usd=0.05))
        await ctx.step("unchecked", free, "unchecked")  # declares nothing: never held
        await ctx.step("checked", free, "checked", estimate=Cost())  # no room left

    async with app.worker(concurrency=2):
        handle = await app.submit("checked")
        await wait_status(app, handle.id, TaskStatus.FAILED)
    assert runs == ["free", "paid", "unchecked"]
    task = await app.get(handle.id)
    assert task.error is not None and task.error.step == "checked"
