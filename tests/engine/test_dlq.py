"""The dead-letter queue on both backends, through `app.dlq`: grouping by root cause
(numbers and ids masked, another step another group), the counters the database keeps,
the trend, bulk retry of 1,000 tasks with no finished step run again (counted), dismiss
and reopen, escalation's notification, the audit trail, idempotency, tenancy, a re-run
outside the queue, and retention."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tether import Context, Permanent, TaskStatus, Tether
from tether.errors import DlqGroupNotFound, DlqKeyConflict, InvalidDlqAction
from tether.models.dlq import DlqActionType, DlqGroupStatus, DlqMemberState
from tether.notify import EmailChannel
from tether.testing import TestEnvironment

START = 1_900_000_000.0  # a round hour: 1_900_000_000 % 3600 == 1600, so not quite
HOUR = 3600.0


def _app(store_url: str, runs: Counter[str], fail: set[str]) -> Tether:
    """`shop`: steps quote, reserve, then charge, which fails while "charge" is in
    `fail` with a message holding the order's numbers and ids; `ship` fails in its
    step `pack` with the same message. `runs` counts each step's executions."""
    app = Tether(store_url)

    def step(name: str, order: int) -> str:
        runs[name] += 1
        if name in fail:
            raise Permanent(f"card declined for order-{order} (cus_{order}x9, {order * 1.5} EUR)")
        return f"{name}:{order}"

    @app.workflow("shop")
    async def shop(ctx: Context, order: int) -> list[str]:
        return [
            await ctx.step("quote", step, "quote", order),
            await ctx.step("reserve", step, "reserve", order),
            await ctx.step("charge", step, "charge", order),
        ]

    @app.workflow("ship")
    async def ship(ctx: Context, order: int) -> str:
        return await ctx.step("pack", step, "charge", order)

    return app


async def _fail(app: Tether, env: TestEnvironment, workflow: str, n: int, **kw: Any) -> list[str]:
    handles = await app.submit_many(workflow, [{"order": i} for i in range(n)], **kw)
    await env.run_until_idle(skip_time=False, timeout=120)
    for h in handles:
        assert (await h.status()).status == TaskStatus.FAILED
    return [h.id for h in handles]


async def test_groups_by_root_cause_with_counters_and_trend(store_url: str) -> None:
    runs: Counter[str] = Counter()
    app = _app(store_url, runs, {"charge"})
    async with TestEnvironment(app, in_memory=False, start=START) as env:
        shop_ids = await _fail(app, env, "shop", 5)
        env.clock.advance(2 * HOUR)
        ship_ids = await _fail(app, env, "ship", 3)
        await _fail(app, env, "shop", 2, tenant="other")
        groups = await app.dlq.groups()
        assert [g.step for g in groups] == ["pack", "charge"]  # newest failure first
        pack, charge = groups
        assert (charge.failures, charge.open, charge.status) == (5, 5, DlqGroupStatus.OPEN)
        assert (pack.failures, pack.open, pack.workflows) == (3, 3, ["ship"])
        assert charge.workflows == ["shop"] and charge.error_type == "Permanent"
        assert charge.first_seen <= charge.last_seen < pack.first_seen
        assert charge.example_task_id in shop_ids
        assert "card declined for order-" in charge.example_error.message
        assert charge.trend is not None and pack.trend is not None
        assert sum(charge.trend.hourly) == 5 and charge.trend.hourly[-3] == 5
        assert pack.trend.hourly[-1] == 3 and sum(pack.trend.daily) == 3
        one = await app.dlq.group(charge.fingerprint)
        assert one is not None and one.example_traceback is not None
        assert "card declined" in one.example_traceback
        members = await app.dlq.tasks(pack.fingerprint)
        assert sorted(m.task_id for m in members) == sorted(ship_ids)
        assert all(m.state == DlqMemberState.OPEN for m in members)
        # Another tenant's failures are its own group; this tenant cannot see them.
        (theirs,) = await app.dlq.groups(tenant="other")
        assert theirs.fingerprint == charge.fingerprint and theirs.failures == 2
        assert await app.dlq.group(charge.fingerprint, tenant="nobody") is None
        assert await app.dlq.tasks(charge.fingerprint, tenant="nobody") == []


async def test_bulk_retry_of_a_thousand_runs_no_finished_step_again(store_url: str) -> None:
    runs: Counter[str] = Counter()
    fail = {"charge"}
    app = _app(store_url, runs, fail)
    async with TestEnvironment(app, in_memory=False, start=START, concurrency=200) as env:
        ids = await _fail(app, env, "shop", 1000)
        assert runs == {"quote": 1000, "reserve": 1000, "charge": 1000}
        (group,) = await app.dlq.groups()
        assert group.open == 1000
        fail.clear()  # the cause is fixed
        done = await app.dlq.retry(group.fingerprint, by="ops", reason="card processor fixed")
        assert sorted(done.task_ids) == sorted(ids) and len(set(done.created)) == 1000
        await env.run_until_idle(skip_time=False, timeout=180)
        assert runs == {"quote": 1000, "reserve": 1000, "charge": 2000}
        for new in done.created[:20]:
            task = await app.get(new)
            assert task.status == TaskStatus.SUCCEEDED and task.forked_from in ids
        after = await app.dlq.group(group.fingerprint)
        assert after is not None
        assert (after.open, after.failures, after.status) == (0, 1000, DlqGroupStatus.RETRIED)
        retried = await app.dlq.tasks(group.fingerprint, state=DlqMemberState.RETRIED, limit=2000)
        assert len(retried) == 1000
        assert {m.retried_as for m in retried} == set(done.created)
        assert {m.action_id for m in retried} == {done.id}
        assert await app.dlq.groups() == []  # no open groups left
        again = await app.dlq.retry(group.fingerprint)  # nothing open: nothing runs
        assert again.task_ids == [] and again.created == []
        (entry, first) = (await app.dlq.actions(group.fingerprint))[:2]
        assert entry.id == again.id and first.id == done.id
        assert (first.actor, first.reason, first.action) == ("ops", "card processor fixed", "retry")


async def test_dismiss_reopen_escalate_and_the_audit_trail(store_url: str) -> None:
    runs: Counter[str] = Counter()
    app = _app(store_url, runs, {"charge"})
    app.notifications.channel("oncall", EmailChannel(("oncall@example.com",)))
    app.notifications.route(["dlq.escalated"], channels=["oncall"], tenant="default")
    async with TestEnvironment(app, in_memory=False, start=START) as env:
        ids = await _fail(app, env, "shop", 4)
        (group,) = await app.dlq.groups()
        fp = group.fingerprint
        with pytest.raises(InvalidDlqAction, match="reason"):
            await app.dlq.act(fp, "dismiss")
        with pytest.raises(InvalidDlqAction, match="assignee"):
            await app.dlq.act(fp, "escalate")
        with pytest.raises(InvalidDlqAction, match="unknown action"):
            await app.dlq.act(fp, "undo")
        with pytest.raises(DlqGroupNotFound):
            await app.dlq.dismiss("0" * 16, "no such group")

        some = await app.dlq.dismiss(fp, "test orders", by="ana", task_ids=[ids[0], "nope"])
        assert some.task_ids == [ids[0]] and some.requested == [ids[0], "nope"]
        esc = await app.dlq.escalate(fp, "bob", note="card processor?", by="ana")
        assert esc.assignee == "bob"
        assert (await app.dlq.group(fp)).assignee == "bob"  # type: ignore[union-attr]
        (note,) = await app.store.list_notifications(tenant="default")
        assert note.trigger == "dlq.escalated" and note.channel == "oncall"
        assert "bob" in note.message.subject and "card processor?" in note.message.text

        rest = await app.dlq.dismiss(fp, "refunded by hand", by="ana")
        assert sorted(rest.task_ids) == sorted(ids[1:])
        closed = await app.dlq.group(fp)
        assert closed is not None and (closed.open, closed.status) == (0, "dismissed")
        assert await app.dlq.groups() == []
        assert [g.fingerprint for g in await app.dlq.groups(status=None)] == [fp]

        # The same root cause again: the group reopens with its new member only.
        new_ids = await _fail(app, env, "shop", 1)
        reopened = await app.dlq.group(fp)
        assert reopened is not None
        assert (reopened.open, reopened.failures, reopened.status) == (1, 5, "open")
        open_now = await app.dlq.tasks(fp, state=DlqMemberState.OPEN)
        assert [m.task_id for m in open_now] == new_ids

        trail = await app.dlq.actions(fp)
        assert [a.action for a in trail] == [
            DlqActionType.DISMISS,
            DlqActionType.ESCALATE,
            DlqActionType.DISMISS,
        ]
        assert trail[0].reason == "refunded by hand" and trail[0].actor == "ana"
        assert trail[0].at >= trail[2].at and trail[2].task_ids == [ids[0]]
        assert await app.dlq.actions(fp, tenant="other") == []


async def test_idempotency_keys_and_tenancy_of_actions(store_url: str) -> None:
    runs: Counter[str] = Counter()
    fail = {"charge"}
    app = _app(store_url, runs, fail)
    async with TestEnvironment(app, in_memory=False, start=START) as env:
        mine = await _fail(app, env, "shop", 2)
        theirs = await _fail(app, env, "shop", 2, tenant="other")
        (group,) = await app.dlq.groups()
        fp = group.fingerprint
        # Another tenant's group does not exist, and its tasks are not members of ours.
        for action in ("retry", "dismiss", "escalate"):
            with pytest.raises(DlqGroupNotFound):
                await app.dlq.act(fp, action, tenant="nobody", reason="r", assignee="a")
        done = await app.dlq.dismiss(fp, "x", task_ids=theirs)
        assert done.task_ids == []
        assert (await app.dlq.group(fp, tenant="other")).open == 2  # type: ignore[union-attr]

        first = await app.dlq.act(fp, "retry", task_ids=[mine[0]], idempotency_key="k1")
        again = await app.dlq.act(fp, "retry", task_ids=[mine[0]], idempotency_key="k1")
        assert again.id == first.id and len(first.created) == 1
        with pytest.raises(DlqKeyConflict):
            await app.dlq.act(fp, "retry", task_ids=[mine[1]], idempotency_key="k1")
        assert len(await app.dlq.actions(fp)) == 2  # the cross-tenant dismissal and k1


async def test_a_rerun_outside_the_queue_and_retention(store_url: str) -> None:
    runs: Counter[str] = Counter()
    app = _app(store_url, runs, {"charge"})
    async with TestEnvironment(app, in_memory=False, start=START) as env:
        ids = await _fail(app, env, "shop", 3)
        (group,) = await app.dlq.groups()
        rerun = await app.rerun(ids[0])
        await env.run_until_idle(skip_time=False)
        assert (await rerun.status()).status == TaskStatus.FAILED  # fails again: a new member
        after = await app.dlq.group(group.fingerprint)
        assert after is not None and (after.open, after.failures) == (3, 4)
        (member,) = await app.dlq.tasks(group.fingerprint, state=DlqMemberState.RETRIED)
        assert (member.task_id, member.retried_as, member.action_id) == (ids[0], rerun.id, None)

        # Retention purges the tasks; their open members leave the group, recorded.
        env.clock.advance(40 * 86400)
        assert await app.store.purge(env.clock.now() - 30 * 86400, now=env.clock.now()) == 4
        gone = await app.dlq.group(group.fingerprint)
        assert gone is not None and (gone.open, gone.status) == (0, DlqGroupStatus.EXPIRED)
        (expired,) = await app.dlq.actions(group.fingerprint)
        assert expired.action == DlqActionType.EXPIRE and expired.actor == "retention"
        assert sorted(expired.task_ids) == sorted([*ids[1:], rerun.id])
        assert await app.dlq.tasks(group.fingerprint) == []
        # The group and its trail stay until quiet for dlq_retention_days.
        now = env.clock.now()
        assert await app.store.purge_dlq(now - 365 * 86400, now) == 0
        assert await app.store.purge_dlq(now + 1, now) == 1
        assert await app.dlq.group(group.fingerprint) is None
        assert await app.dlq.actions(group.fingerprint) == []


async def test_compensate_a_group_whose_compensations_had_failed(store_url: str) -> None:
    """Tasks whose saga stopped at a failing compensation form a `CompensationFailed`
    group; once the cause is fixed, compensating the group undoes the rest, each step
    once, in linked tasks that succeed; the members leave as `compensated`."""
    undone: Counter[str] = Counter()
    broken = {"yes"}
    app = Tether(store_url)

    @app.step
    def release(what: str) -> None:
        if what.startswith("seat") and broken:
            raise Permanent("the seat service refuses releases")
        undone[what] += 1

    @app.workflow("book")
    async def book(ctx: Context, order: int) -> None:
        await ctx.step("room", lambda: f"room-{order}", compensate=release)
        await ctx.step("seat", lambda: f"seat-{order}", compensate=release)
        await ctx.step("pay", _declined)

    async with TestEnvironment(app, in_memory=False, start=START, concurrency=50) as env:
        ids = await _fail(app, env, "book", 20)
        assert undone == Counter(), "the seat's compensation failed first: nothing undone"
        (group,) = await app.dlq.groups()
        assert (group.error_type, group.open) == ("CompensationFailed", 20)
        broken.clear()
        done = await app.dlq.compensate(group.fingerprint, by="ops", reason="seats fixed")
        assert sorted(done.task_ids) == sorted(ids) and len(done.created) == 20
        await env.run_until_idle(skip_time=False, timeout=120)
        for new in done.created:
            task = await app.get(new)
            assert task.status == TaskStatus.SUCCEEDED and task.result["of"] in ids
            assert task.result["compensated"] == ["seat", "room"]
        assert undone == Counter({f"{k}-{i}": 1 for i in range(20) for k in ("seat", "room")})
        after = await app.dlq.group(group.fingerprint)
        assert after is not None and (after.open, after.status) == (0, DlqGroupStatus.COMPENSATED)
        members = await app.dlq.tasks(group.fingerprint, state=DlqMemberState.COMPENSATED)
        assert {m.retried_as for m in members} == set(done.created)
        assert await app.dlq.groups() == [], "the forks' success opens no group"
        (entry,) = await app.dlq.actions(group.fingerprint)
        assert (entry.action, entry.actor, entry.reason) == (
            DlqActionType.COMPENSATE,
            "ops",
            "seats fixed",
        )


def _declined() -> None:
    raise Permanent("payment declined")
