"""Group commit for intake (`tether.store.coalesce`): submits that arrive while another
is being written share the next transaction, and every caller still gets its own tasks
and its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tether import Context, IdempotencyConflict, Tether


def _app(make_app: Callable[[], Tether]) -> Tether:
    app = make_app()

    @app.workflow("pay")
    async def pay(ctx: Context, amount: int) -> int:
        return amount

    return app


def _count_writes(app: Tether) -> list[int]:
    """Wrap the store's intake write: the size of every transaction it runs."""
    intake = app.store._intake  # type: ignore[attr-defined]
    sizes: list[int] = []
    write = intake._write

    async def counted(tasks, now):  # type: ignore[no-untyped-def]
        sizes.append(len(tasks))
        return await write(tasks, now)

    intake._write = counted
    return sizes


async def test_concurrent_submits_share_transactions_and_get_their_own_tasks(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.open()
    sizes = _count_writes(app)
    handles = await asyncio.gather(*(app.submit("pay", {"amount": n}) for n in range(40)))
    assert len({h.id for h in handles}) == 40 and all(h.created for h in handles)
    for n, handle in enumerate(handles):
        assert (await app.get(handle.id)).input == {"amount": n}
    assert sum(sizes) == 40
    assert len(sizes) < 40, f"no submits were grouped: {sizes}"
    assert len(await app.list_tasks()) == 40


async def test_a_conflict_in_a_group_fails_only_its_own_submit(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    first = await app.submit("pay", {"amount": 1}, idempotency_key="order-1")
    sizes = _count_writes(app)
    results = await asyncio.gather(
        app.submit("pay", {"amount": 10}),
        app.submit("pay", {"amount": 2}, idempotency_key="order-1"),  # another input: 422
        app.submit("pay", {"amount": 11}),
        app.submit("pay", {"amount": 12}, idempotency_key="order-2"),
        return_exceptions=True,
    )
    assert isinstance(results[1], IdempotencyConflict)
    stored = [r for i, r in enumerate(results) if i != 1]
    assert all(not isinstance(r, BaseException) and r.created for r in stored), results
    ids = {t.id for t in await app.list_tasks()}
    assert ids == {first.id, *(r.id for r in stored)}  # type: ignore[union-attr]
    assert len(sizes) > 1


@pytest.mark.parametrize("same_input", [True, False])
async def test_two_submits_with_one_key_are_never_grouped(
    make_app: Callable[[], Tether], same_input: bool
) -> None:
    app = _app(make_app)
    await app.open()
    results = await asyncio.gather(
        app.submit("pay", {"amount": 5}, idempotency_key="k"),
        app.submit("pay", {"amount": 5 if same_input else 6}, idempotency_key="k"),
        app.submit("pay", {"amount": 7}),
        return_exceptions=True,
    )
    first, second, other = results
    assert not isinstance(first, BaseException) and first.created
    assert not isinstance(other, BaseException) and other.created
    if same_input:
        assert not isinstance(second, BaseException)
        assert second.id == first.id and not second.created
    else:
        assert isinstance(second, IdempotencyConflict)
    assert len(await app.list_tasks()) == 2
