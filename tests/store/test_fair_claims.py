"""Fair claiming (ADR 88), on both backends: claims serve the fairness keys of a queue
in turn (tenants by default, weighted), priorities overtake a bounded amount of other
work, an idle key comes back level, tasks submitted for later are claimed once due,
and with `fair_claims` off a queue is first come, first served."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tether import Context, Fairness, InputValidationError, Tether
from tether.config import load_settings
from tether.store.sql.fairness import IDLE_CREDIT, PRIORITY_STEP


def _app(store_url: str, **settings: Any) -> Tether:
    app = Tether(settings=load_settings({"database_url": store_url, **settings}))

    @app.workflow("job")
    async def job(ctx: Context, n: int = 0, customer: str = "") -> int:
        return n

    @app.workflow("per_customer", fairness=Fairness(key=lambda i: i["customer"].lower()))
    async def per_customer(ctx: Context, customer: Any, n: int = 0) -> int:
        return n

    return app


async def _claim(app: Tether, limit: int) -> list[tuple[str, Any]]:
    """(tenant, input) of the next `limit` tasks a claim takes (which, not in order)."""
    now = app.clock.now()
    claimed = await app.store.claim("w1", ["default"], limit, now, now + 7200)
    return [(c.task.tenant, c.task.input) for c in claimed]


async def test_a_later_tenant_is_served_in_turn_not_behind(store_url: str) -> None:
    app = _app(store_url)
    try:
        await app.submit_many("job", [{"n": i} for i in range(100)], tenant="noisy")
        await app.submit_many("job", [{"n": i} for i in range(10)], tenant="quiet")
        first = await _claim(app, 20)
        assert Counter(t for t, _ in first) == {"noisy": 10, "quiet": 10}
        # each key's own tasks keep their order
        assert sorted(i["n"] for t, i in first if t == "quiet") == list(range(10))
        assert sorted(i["n"] for t, i in first if t == "noisy") == list(range(10))
    finally:
        await app.close()


async def test_weights_share_the_queue(store_url: str) -> None:
    app = _app(store_url, fair_weights={"gold": 2.0})
    try:
        await app.submit_many("job", [{}] * 60, tenant="gold")
        await app.submit_many("job", [{}] * 60, tenant="basic")
        await app.submit_many("job", [{}] * 60, tenant="other")
        served = Counter(t for t, _ in await _claim(app, 40))
        assert served == {"gold": 20, "basic": 10, "other": 10}
    finally:
        await app.close()


async def test_with_fair_claims_off_the_queue_is_first_come(store_url: str) -> None:
    app = _app(store_url, fair_claims=False)
    try:
        await app.submit_many("job", [{}] * 30, tenant="noisy")
        await app.submit_many("job", [{}] * 10, tenant="quiet")
        assert {t for t, _ in await _claim(app, 30)} == {"noisy"}
    finally:
        await app.close()


async def test_an_idle_key_comes_back_level_with_a_bounded_credit(store_url: str) -> None:
    app = _app(store_url)
    try:
        await app.submit_many("job", [{}] * 500, tenant="a")
        assert len(await _claim(app, 500)) == 500  # a's clock ran 500 ahead; all served
        await app.submit_many("job", [{}] * 200, tenant="b")
        await app.submit_many("job", [{}] * 200, tenant="a")
        # b, new, takes IDLE_CREDIT turns first, then they alternate: a owes nothing
        # for having been alone.
        credit = int(IDLE_CREDIT)
        assert {t for t, _ in await _claim(app, credit)} == {"b"}
        assert Counter(t for t, _ in await _claim(app, 100)) == {"a": 50, "b": 50}
    finally:
        await app.close()


async def test_a_quiet_burst_goes_ahead_of_a_backlog(store_url: str) -> None:
    app = _app(store_url)
    try:
        await app.submit_many("job", [{}] * 300, tenant="noisy")
        await _claim(app, 10)
        await app.submit_many("job", [{}] * 5, tenant="quiet")
        assert {t for t, _ in await _claim(app, 5)} == {"quiet"}
    finally:
        await app.close()


async def test_priority_overtakes_a_bounded_amount_and_ages(store_url: str) -> None:
    app = _app(store_url)
    try:
        await app.submit_many("job", [{"n": -1}])
        await app.submit_many("job", [{"n": i} for i in range(5)], priority=1)
        assert sorted(i["n"] for _, i in await _claim(app, 5)) == [0, 1, 2, 3, 4]
        assert [i["n"] for _, i in await _claim(app, 5)] == [-1]
        # Beyond PRIORITY_STEP of later work, higher priority waits its turn: the
        # low-priority task ages into the front.
        step = int(PRIORITY_STEP)
        await app.submit_many("job", [{"n": -2}])
        await app.submit_many("job", [{"n": i} for i in range(step + 50)], priority=1)
        assert -2 not in [i["n"] for _, i in await _claim(app, step - 10)]
        assert -2 in [i["n"] for _, i in await _claim(app, 20)]
    finally:
        await app.close()


async def test_a_workflow_can_key_its_tasks_by_input(store_url: str) -> None:
    app = _app(store_url)
    try:
        await app.submit_many("per_customer", [{"customer": "big", "n": i} for i in range(40)])
        await app.submit_many("per_customer", [{"customer": "small", "n": i} for i in range(4)])
        served = Counter(i["customer"] for _, i in await _claim(app, 8))
        assert served == {"big": 4, "small": 4}
        with pytest.raises(InputValidationError, match="fairness key"):
            app.new_task("per_customer", {"customer": None})
    finally:
        await app.close()


async def test_tasks_for_later_are_claimed_once_due(store_url: str) -> None:
    app = _app(store_url)
    try:
        later = app.clock.now() + 3600
        (handle,) = await app.submit_many("job", [{"n": 7}], run_at=later)
        await app.submit_many("job", [{"n": 1}])
        assert [i["n"] for _, i in await _claim(app, 10)] == [1]
        claimed = await app.store.claim("w1", ["default"], 10, later + 1, later + 60)
        assert [c.task.id for c in claimed] == [handle.id]
    finally:
        await app.close()
