"""Canary versions (ADR 84): a share of new tasks on the canary, chosen by task id;
promote, roll back and clear without a deploy; per-tenant and fleet-wide rollouts; the
figures per version; every process routes by a change within `REFRESH`."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from tether import Context, Permanent, TaskStatus, Tether
from tether.models.rollouts import EVERY_TENANT
from tether.rollouts import REFRESH, bucket
from tether.services import rollouts
from tether.services.rollouts import InvalidRollout


def _two_versions(app: Tether) -> Tether:
    @app.workflow("triage", version=1)
    async def v1(ctx: Context, n: int = 0) -> str:
        return "v1"

    @app.workflow("triage", version=2)
    async def v2(ctx: Context, n: int = 0) -> str:
        if n % 2:
            raise Permanent("the new prompt refuses odd tickets")
        return "v2"

    return app


async def _versions(app: Tether, n: int, tenant: str = "default") -> Counter[int]:
    handles = await app.submit_many("triage", [{"n": 0}] * n, tenant=tenant)
    return Counter(h.initial.workflow_version for h in handles)


async def test_a_five_percent_canary_takes_five_percent_and_each_task_one_side(
    make_app: Callable[[], Tether],
) -> None:
    app = _two_versions(make_app())
    await app.open()
    try:
        assert await _versions(app, 10) == {2: 10}, "without a rollout: the newest"
        r = await rollouts.canary(app, "triage", 2, 0.05, by="ops")
        assert (r.stable, r.canary, r.share, r.updated_by) == (1, 2, 0.05, "ops")
        counts = await _versions(app, 2000)
        assert set(counts) == {1, 2}
        assert 0.03 <= counts[2] / 2000 <= 0.07, counts  # within 2 points of 5%
        handles = await app.submit_many("triage", [{"n": 0}] * 200)
        for h in handles:  # deterministic by task id
            assert (h.initial.workflow_version == 2) == (bucket(h.id) < 0.05)
        assert await app.submit("triage", {"n": 0}, version=2)  # explicit beats rollout
    finally:
        await app.close()


async def test_promote_rollback_and_clear(make_app: Callable[[], Tether]) -> None:
    app = _two_versions(make_app())
    await app.open()
    try:
        await rollouts.canary(app, "triage", 2, 0.5)
        await rollouts.promote(app, "triage")
        assert await _versions(app, 50) == {2: 50}
        await rollouts.canary(app, "triage", 1, 0.5)  # a canary of an older version, even
        await rollouts.rollback(app, "triage")
        assert await _versions(app, 50) == {2: 50}, "rolled back to the stable one"
        with pytest.raises(InvalidRollout, match="the stable one already"):
            await rollouts.canary(app, "triage", 2, 1.0)
        assert await rollouts.clear(app, "triage") and not await rollouts.clear(app, "triage")
        assert await _versions(app, 20) == {2: 20}
        with pytest.raises(InvalidRollout, match="no version 3"):
            await rollouts.canary(app, "triage", 3, 0.1)
        with pytest.raises(InvalidRollout, match="between 0 and 1"):
            await rollouts.canary(app, "triage", 2, 1.5)
        with pytest.raises(InvalidRollout, match="no canary to promote"):
            await rollouts.promote(app, "triage")
    finally:
        await app.close()


async def test_a_rolled_back_canary_pins_the_stable_version(
    make_app: Callable[[], Tether],
) -> None:
    """After a rollback new tasks start on the stable version though a newer one is
    registered; tasks already on the canary finish on it (ADR 64)."""
    app = _two_versions(make_app())
    async with app.worker(poll_interval=0.05):
        await rollouts.canary(app, "triage", 2, 1.0)
        on_canary = await app.submit("triage", {"n": 0})
        await rollouts.rollback(app, "triage")
        after = await app.submit("triage", {"n": 0})
        assert await on_canary.result(timeout=10) == "v2"
        assert await after.result(timeout=10) == "v1"


async def test_a_tenant_rollout_beats_the_fleet_wide_one(make_app: Callable[[], Tether]) -> None:
    app = _two_versions(make_app())
    await app.open()
    try:
        await rollouts.canary(app, "triage", 2, 0.0)  # every tenant: stay on 1
        await rollouts.canary(app, "triage", 2, 1.0, tenant="acme")
        assert await _versions(app, 20, tenant="acme") == {2: 20}
        assert await _versions(app, 20, tenant="globex") == {1: 20}
        view = await rollouts.show(app, "triage", "globex")
        assert view.rollout is not None and view.rollout.tenant == EVERY_TENANT
    finally:
        await app.close()


async def test_figures_put_the_canary_beside_the_stable_version(
    make_app: Callable[[], Tether],
) -> None:
    app = _two_versions(make_app())
    async with app.worker(poll_interval=0.05):
        await app.submit("triage", {"n": 1})  # before the canary: not counted
        await rollouts.canary(app, "triage", 2, 0.5)
        handles = await app.submit_many("triage", [{"n": i} for i in range(40)], tenant="t1")
        await app.submit_many("triage", [{"n": 1}] * 5, tenant="t2")
        for h in handles:
            await h.wait(timeout=20)
        view = await rollouts.show(app, "triage", "t1")
    by_version = {f.version: f for f in view.figures}
    expected = Counter(h.initial.workflow_version for h in handles)
    assert {v: f.total for v, f in by_version.items()} == expected
    assert by_version[1].failure_rate == 0.0
    on_two = [h for h in handles if h.initial.workflow_version == 2]
    odd = sum(1 for h in on_two if h.initial.input["n"] % 2)
    assert by_version[2].counts.get("failed", 0) == odd
    assert by_version[2].failure_rate == pytest.approx(odd / len(on_two))
    assert view.registered == [1, 2] and view.rollout is not None
    assert view.since == view.rollout.started_at


async def test_another_process_routes_by_a_change_within_the_refresh(
    make_app: Callable[[], Tether],
) -> None:
    first, second = _two_versions(make_app()), make_app()
    _two_versions(second)
    await first.open()
    await second.open()
    try:
        assert (await second.submit("triage", {"n": 0})).initial.workflow_version == 2
        await rollouts.canary(first, "triage", 2, 0.0)  # made in the first process
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10 * REFRESH
        while (await second.submit("triage", {"n": 0})).initial.workflow_version != 1:
            assert loop.time() < deadline, "the second process never read the rollout"
            await asyncio.sleep(0.05)
    finally:
        await first.close()
        await second.close()


async def test_unknown_workflow_and_status_of_old_tasks(make_app: Callable[[], Tether]) -> None:
    app = _two_versions(make_app())
    await app.open()
    try:
        with pytest.raises(Exception, match="unknown workflow"):
            await rollouts.canary(app, "nope", 1, 0.1)
        task = await app.get((await app.submit("triage", {"n": 0})).id)
        assert task.status == TaskStatus.QUEUED
    finally:
        await app.close()
