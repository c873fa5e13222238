"""Rate-limit buckets in the store (ADR 90), on both backends: a take is granted while
the bucket holds what it needs and says when it will be otherwise; a take over several
buckets is all or nothing; debits leave a bucket in debt and credits never fill it
beyond full; and many concurrent takes through two stores on one database (two
connections, two processes' worth) never spend one unit twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tether import Tether
from tether.models.buckets import SHARED, BucketKey, BucketKind
from tether.store.buckets import Take

CRM = BucketKey(BucketKind.REQUESTS, "crm", SHARED)
TOKENS = BucketKey(BucketKind.TOKENS, "openai", SHARED)
NOW = 1_800_000_000.0


def crm(cost: float = 1, rate: float = 2, burst: float = 3) -> Take:
    return Take(CRM, cost, rate, burst)


async def test_a_bucket_grants_its_burst_then_its_rate(make_app: Callable[[], Tether]) -> None:
    app = make_app()
    await app.open()
    store = app.store
    for _ in range(3):
        assert (await store.take_from_buckets([crm()], NOW)).granted
    refused = await store.take_from_buckets([crm()], NOW)
    assert not refused.granted and refused.refused_by == CRM
    assert refused.retry_at == pytest.approx(NOW + 0.5)  # 2 a second
    assert not (await store.take_from_buckets([crm()], NOW + 0.49)).granted
    assert (await store.take_from_buckets([crm()], NOW + 0.5)).granted
    assert not (await store.take_from_buckets([crm()], NOW + 0.5)).granted
    # Idle for long, it is full again, never fuller: three, not more.
    granted = [(await store.take_from_buckets([crm()], NOW + 100)).granted for _ in range(4)]
    assert granted == [True, True, True, False]
    (state,) = await store.list_buckets(None)
    assert state.key == CRM and (state.rate, state.burst) == (2, 3)
    assert state.granted is False and state.updated_at == NOW + 100
    assert state.available(NOW + 100) == pytest.approx(0)
    assert state.available(NOW + 101) == pytest.approx(2)


async def test_a_take_over_several_buckets_is_all_or_nothing(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    await app.open()
    store = app.store
    tokens = Take(TOKENS, 800, rate=100, burst=1000)
    assert (await store.take_from_buckets([crm(), tokens], NOW)).granted
    # The tokens refuse (200 left, 800 needed): the request is not spent either.
    refused = await store.take_from_buckets([crm(), tokens], NOW)
    assert not refused.granted and refused.refused_by == TOKENS
    assert refused.retry_at == pytest.approx(NOW + 6)  # 600 more tokens, at 100 a second
    assert [(await store.take_from_buckets([crm()], NOW)).granted for _ in range(3)] == [
        True,
        True,
        False,
    ]


async def test_debts_and_credits(make_app: Callable[[], Tether]) -> None:
    app = make_app()
    await app.open()
    store = app.store
    # A take larger than the bucket waits for a full one, and leaves it in debt.
    assert (await store.take_from_buckets([Take(TOKENS, 2500, 100, 1000)], NOW)).granted
    refused = await store.take_from_buckets([Take(TOKENS, 1, 100, 1000)], NOW)
    assert refused.retry_at == pytest.approx(NOW + 15.01)  # 1500 of debt, then 1
    await store.adjust_bucket(TOKENS, -2000, 100, 1000, NOW)  # it used 500, not 2500
    (state,) = await store.list_buckets(None)
    assert state.available(NOW) == pytest.approx(500)
    await store.adjust_bucket(TOKENS, -5000, 100, 1000, NOW)  # never fuller than full
    assert (await store.list_buckets(None))[0].available(NOW) == pytest.approx(1000)
    await store.adjust_bucket(TOKENS, 3000, 100, 1000, NOW)  # a call used 3000 more
    assert (await store.list_buckets(None))[0].available(NOW) == pytest.approx(-2000)
    # A debit of a bucket never taken from: full, minus the debit.
    other = BucketKey(BucketKind.TOKENS, "anthropic", "acme")
    await store.adjust_bucket(other, 300, 100, 1000, NOW)
    assert [s.available(NOW) for s in await store.list_buckets("acme")] == [pytest.approx(700)]
    await store.adjust_bucket(BucketKey(BucketKind.TOKENS, "none", "acme"), -5, 1, 1, NOW)
    assert [s.key.name for s in await store.list_buckets("acme")] == ["anthropic"]
    assert len(await store.list_buckets(None)) == 2


async def test_concurrent_takes_through_two_stores_never_spend_a_unit_twice(
    make_app: Callable[[], Tether],
) -> None:
    first, second = make_app(), make_app()
    await first.open()
    await second.open()
    tokens = Take(TOKENS, 10, rate=1, burst=200)
    takes = [crm(rate=1, burst=25), tokens]

    async def take(app: Tether) -> bool:
        return (await app.store.take_from_buckets(takes, NOW)).granted

    outcomes = await asyncio.gather(*(take(app) for app in (first, second) * 40))
    # 25 requests were there, and tokens for 20 of them: 20 and not one more.
    assert sum(outcomes) == 20
    states = {s.key: s for s in await first.store.list_buckets(None)}
    assert states[CRM].available(NOW) == pytest.approx(5)
    assert states[TOKENS].available(NOW) == pytest.approx(0)
    single = await asyncio.gather(
        *(app.store.take_from_buckets([crm(rate=1, burst=25)], NOW) for app in (first, second) * 5)
    )
    assert sum(o.granted for o in single) == 5
