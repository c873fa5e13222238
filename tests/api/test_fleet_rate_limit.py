"""The submission rate limit is fleet-wide (ADR 90), on both backends: two API servers
(two apps, each its own store and limiter) on one database share each tenant's
bucket, so a tenant gets its burst once, not once per server; and the limiter's local
leases never admit more than the shared bucket holds, credit back what lapses
unspent, and leave a bucket in debt after a batch larger than its burst."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from api.live import LiveServer, auth, make_settings
from tether import Tether
from tether.flow import SubmitLimiter
from tether.store.base import Store
from tether.testing import ManualClock

BODY = {"workflow": "echo", "input": {"x": 1}}


def test_two_servers_on_one_database_share_a_tenants_bucket(store_url: str) -> None:
    settings = make_settings(store_url, submit_rate=0.05, submit_burst=4)
    with (
        LiveServer(settings, workers=False) as one,
        LiveServer(settings, workers=False) as two,
        httpx.Client(base_url=one.url, headers=auth(), timeout=30) as a,
        httpx.Client(base_url=two.url, headers=auth(), timeout=30) as b,
    ):
        statuses = [client.post("/v1/tasks", json=BODY).status_code for client in (a, b) * 4]
        # Four in all (a new token comes every 20 s), not four on each server.
        assert sorted(statuses) == [202] * 4 + [429] * 4
        refused = b.post("/v1/tasks", json=BODY)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["content-type"] == "application/problem+json"
        # Another tenant's bucket is its own, on either server.
        assert a.post("/v1/tasks", json=BODY, headers=auth("t2")).status_code == 202
        assert b.post("/v1/tasks", json=BODY, headers=auth("t2")).status_code == 202
        # Its bucket in /metrics: a tenant sees its own, never another's.
        text = a.get("/metrics").text
        mine = 'tether_rate_limit_available{integration="",kind="submits",tenant="t1"}'
        assert mine in text and 'tenant="t2"' not in text
        assert 'tether_rate_limit_burst{integration="",kind="submits",tenant="t1"} 4.0' in text


@dataclass
class Host:
    store: Store
    clock: ManualClock


async def _hosts(make_app: Callable[[], Tether]) -> tuple[Host, Host, ManualClock]:
    clock = ManualClock(1_800_000_000.0)
    first, second = make_app(), make_app()
    await first.open()
    await second.open()
    return Host(first.store, clock), Host(second.store, clock), clock


async def test_leases_never_admit_more_than_the_shared_bucket(
    make_app: Callable[[], Tether],
) -> None:
    one, two, clock = await _hosts(make_app)
    limiters = [SubmitLimiter(h, rate=1000, burst=400) for h in (one, two)]
    assert limiters[0].max_lease == 100  # a quarter of the burst; 0.1 s of 1000/s
    waits = await asyncio.gather(*(lim.take("acme") for lim in limiters * 300))
    # Never more than the burst across both; a little less when one process's lease
    # still holds tokens its last callers did not need while the other was refused
    # (how the two interleave depends on the machine's load).
    admitted = sum(w == 0 for w in waits)
    assert 300 <= admitted <= 400  # and the 200 or more refused are told when to come back
    assert all(w > 0 for w in waits if w != 0)
    clock.advance(0.05)  # 50 more tokens
    waits = await asyncio.gather(*(lim.take("acme") for lim in limiters * 50))
    assert 1 <= sum(w == 0 for w in waits) <= 50 + 400 - admitted


async def test_a_lapsed_lease_is_credited_back(make_app: Callable[[], Tether]) -> None:
    one, _, clock = await _hosts(make_app)
    limiter = SubmitLimiter(one, rate=100, burst=200)
    for _ in range(16):  # a busy tenant: leases of 1, 2, 4, 8, then 10 (0.1 s of 100/s)
        assert await limiter.take("acme") == 0
    (bucket,) = await one.store.list_buckets("acme")
    assert bucket.available(clock.now()) == pytest.approx(200 - 25)  # 9 of them unspent
    clock.advance(0.15)  # the lease lapses; 15 tokens come back meanwhile
    assert await limiter.take("acme") == 0  # a lease half as large: 5

    async def available() -> float:
        (state,) = await one.store.list_buckets("acme")
        return state.available(clock.now())

    # 175 + 15, less the new lease, plus the 9 credited back (in the background).
    for _ in range(500):
        if await available() == pytest.approx(190 - 5 + 9):
            break
        await asyncio.sleep(0.01)
    assert await available() == pytest.approx(190 - 5 + 9)


async def test_a_batch_larger_than_the_burst_leaves_the_bucket_in_debt(
    make_app: Callable[[], Tether],
) -> None:
    one, two, clock = await _hosts(make_app)
    first, second = SubmitLimiter(one, rate=100, burst=200), SubmitLimiter(two, 100, 200)
    assert await first.take("acme", 1000) == 0  # a full bucket admits one big batch
    wait = await second.take("acme", 1)  # and the other server sees its debt
    assert wait == pytest.approx(8.01)  # 800 tokens of debt + 1, at 100 a second
    clock.advance(wait)
    assert await second.take("acme", 1) == 0
    assert await first.take("other", 1) == 0  # per tenant
    assert await SubmitLimiter(one, rate=0, burst=1).take("acme", 10**6) == 0  # 0: no limit
